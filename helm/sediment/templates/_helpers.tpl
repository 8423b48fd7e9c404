{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "sediment.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name, cut to 47 characters: the bundled etcd's
StatefulSet adds "-etcd", and a StatefulSet's name must leave room for the
"-<10 characters>" of its pods' controller-revision-hash label (63 in all).
*/}}
{{- define "sediment.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 47 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sediment.headlessName" -}}
{{- printf "%s-headless" (include "sediment.fullname" .) }}
{{- end }}

{{- define "sediment.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sediment.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sediment.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: broker
{{- end }}

{{- define "sediment.labels" -}}
helm.sh/chart: {{ include "sediment.chart" . }}
{{ include "sediment.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sediment.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sediment.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sediment.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* An IP and port as the broker parses them: IPv6 in brackets. */}}
{{- define "sediment.hostPort" -}}
{{- $ip := index . 0 }}
{{- if contains ":" $ip }}
{{- printf "[%s]:%d" $ip (index . 1 | int) }}
{{- else }}
{{- printf "%s:%d" $ip (index . 1 | int) }}
{{- end }}
{{- end }}

{{/*
Whole seconds the broker may take to stop; see values.yaml. In cluster mode
a controlled shutdown first moves its leaderships away, for up to half of
shutdown_timeout_ms, then drains for up to shutdown_timeout_ms.
*/}}
{{- define "sediment.terminationGracePeriodSeconds" -}}
{{- $ms := int64 .Values.broker.shutdownTimeoutMs }}
{{- if include "sediment.etcdEndpoints" . }}
{{- $ms = add $ms (div $ms 2) }}
{{- end }}
{{- $drain := div (add $ms 999) 1000 }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $drain (int64 .Values.broker.terminationGraceExtraSeconds) }}
{{- else if le (int64 .Values.terminationGracePeriodSeconds) $drain }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be above the %d s a shutdown may take (broker.shutdownTimeoutMs, times 1.5 in cluster mode), or the kubelet kills the broker before it has fsynced its partitions" (int64 .Values.terminationGracePeriodSeconds) $drain) }}
{{- else }}
{{- int64 .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
One TOML value. Helm reads every number as a float, so whole numbers are
printed as integers (the broker refuses 15000.0 for an integer key); strings
are printed as JSON strings, which TOML reads as basic strings.
*/}}
{{- define "sediment.tomlValue" -}}
{{- if kindIs "string" . }}
{{- toJson . }}
{{- else if kindIs "bool" . }}
{{- ternary "true" "false" . }}
{{- else if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) }}
{{- if eq (float64 .) (float64 (int64 .)) }}
{{- int64 . }}
{{- else }}
{{- . }}
{{- end }}
{{- else }}
{{- fail (printf "broker.config: %v is not a string, a number or a boolean" .) }}
{{- end }}
{{- end }}

{{/* The bundled etcd's StatefulSet, and its headless Service. */}}
{{- define "sediment.etcdName" -}}
{{- printf "%s-etcd" (include "sediment.fullname" .) }}
{{- end }}

{{- define "sediment.etcdSelectorLabels" -}}
app.kubernetes.io/name: {{ include "sediment.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: etcd
{{- end }}

{{/* A bundled etcd member's DNS name under the headless Service. */}}
{{- define "sediment.etcdMemberHost" -}}
{{- $ := index . 0 }}
{{- printf "%s-%d.%s.%s.svc.%s" (include "sediment.etcdName" $) (index . 1 | int) (include "sediment.etcdName" $) $.Release.Namespace $.Values.clusterDomain }}
{{- end }}

{{/*
The brokers' `--etcd`: the bundled members' client URLs or the external
endpoints, comma-separated; empty in single-broker mode. The schema refuses
both at once, and more than one broker with neither.
*/}}
{{- define "sediment.etcdEndpoints" -}}
{{- $urls := list }}
{{- if .Values.etcd.bundled.enabled }}
{{- range $i := until (int .Values.etcd.bundled.replicas) }}
{{- $urls = append $urls (printf "http://%s:%d" (include "sediment.etcdMemberHost" (list $ $i)) (int $.Values.etcd.bundled.clientPort)) }}
{{- end }}
{{- else }}
{{- $urls = .Values.etcd.external.endpoints }}
{{- end }}
{{- join "," $urls }}
{{- end }}

{{- define "sediment.etcdLabels" -}}
helm.sh/chart: {{ include "sediment.chart" . }}
{{ include "sediment.etcdSelectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
topologySpreadConstraints for a set of pods: (list $ <their selector labels
as YAML>). An entry without labelSelector gets those labels.
*/}}
{{- define "sediment.topologySpread" -}}
{{- $constraints := list }}
{{- range (index . 0).Values.topologySpreadConstraints }}
{{- $c := deepCopy . }}
{{- if not $c.labelSelector }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (index $ 1 | fromYaml)) }}
{{- end }}
{{- $constraints = append $constraints $c }}
{{- end }}
{{- toYaml $constraints }}
{{- end }}
