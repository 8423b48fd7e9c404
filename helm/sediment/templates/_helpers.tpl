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

{{/*
The client listener's security protocol (the Kafka port), from tls.enabled
and sasl.enabled: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
*/}}
{{- define "sediment.securityProtocol" -}}
{{- if and .Values.tls.enabled .Values.sasl.enabled }}SASL_SSL
{{- else if .Values.tls.enabled }}SSL
{{- else if .Values.sasl.enabled }}SASL_PLAINTEXT
{{- else }}PLAINTEXT
{{- end }}
{{- end }}

{{/*
"true" when the brokers replicate through a listener of their own, INTERNAL
(PLAINTEXT on broker.internalPort): in cluster mode with a secured Kafka
port, since a follower does not yet speak TLS or SASL (docs/security.md, "In
a cluster"). Empty otherwise.
*/}}
{{- define "sediment.internalListener" -}}
{{- if and (include "sediment.etcdEndpoints" .) (ne (include "sediment.securityProtocol" .) "PLAINTEXT") }}true{{ end }}
{{- end }}

{{/*
"true" when the TOML file has an [auth] table: SASL, the authorizer, or any
auth value off its default. Empty otherwise, and the file is as before.
*/}}
{{- define "sediment.authTable" -}}
{{- $a := .Values.auth }}
{{- if or .Values.sasl.enabled $a.authorizer $a.superUsers $a.allowEveryoneIfNoAclFound $a.connectionsMaxReauthMs }}true{{ end }}
{{- end }}

{{/*
Where the Secrets are mounted (read-only), and the files the TOML names.
Each Secret key is projected to a fixed file name.
*/}}
{{- define "sediment.tlsDir" -}}/etc/sediment-tls{{- end }}
{{- define "sediment.clientCADir" -}}/etc/sediment-client-ca{{- end }}
{{- define "sediment.plainUsersDir" -}}/etc/sediment-plain-users{{- end }}
{{- define "sediment.tokenDir" -}}/etc/sediment-metrics-token{{- end }}

{{/*
The broker's TOML file: (list $ <ordinal>). With the INTERNAL listener each
broker gets a file of its own (broker-<ordinal>.toml), because that
listener's advertised name is the pod's and only the first listener's
address comes from SEDIMENT_LISTEN and SEDIMENT_ADVERTISE; otherwise one
file for all (ordinal ""). The client listener is always the first.
*/}}
{{- define "sediment.configToml" -}}
{{- $ := index . 0 }}
{{- $ordinal := index . 1 }}
{{- $v := $.Values }}
{{- $protocol := include "sediment.securityProtocol" $ }}
{{- $internal := include "sediment.internalListener" $ -}}
shutdown_timeout_ms = {{ int64 $v.broker.shutdownTimeoutMs }}
{{- if include "sediment.etcdEndpoints" $ }}
{{- with $v.broker.cluster }}
etcd_lease_ttl_ms = {{ int64 .etcdLeaseTtlMs }}
replica_lag_time_max_ms = {{ int64 .replicaLagTimeMaxMs }}
default_replication_factor = {{ int64 .defaultReplicationFactor }}
offsets_topic_partitions = {{ int64 .offsetsTopicPartitions }}
offsets_topic_replication_factor = {{ int64 .offsetsTopicReplicationFactor }}
transaction_state_partitions = {{ int64 .transactionStatePartitions }}
transaction_state_replication_factor = {{ int64 .transactionStateReplicationFactor }}
{{- end }}
{{- end }}
{{- range $key, $value := $v.broker.config }}
{{ $key }} = {{ include "sediment.tomlValue" $value }}
{{- end }}
{{- if $internal }}
inter_broker_listener = "INTERNAL"
{{- end }}
{{- if $v.metrics.tokenSecretName }}
http_token_file = "{{ include "sediment.tokenDir" $ }}/token"
{{- end }}
{{- with $v.broker.topicDefaults }}

[topic_defaults]
{{- range $key, $value := . }}
{{ toJson $key }} = {{ toJson (toString $value) }}
{{- end }}
{{- end }}
{{- if has "User:ANONYMOUS" $v.auth.superUsers }}
{{- fail "auth.superUsers: User:ANONYMOUS would make every unauthenticated client (and anyone reaching the INTERNAL port) a super user; give the brokers CLUSTER_ACTION with an ACL instead (docs/security.md, \"In a cluster\")" }}
{{- end }}
{{- if include "sediment.authTable" $ }}
{{- with $v.auth }}

[auth]
authorizer = {{ ternary "true" "false" .authorizer }}
super_users = {{ toJson (.superUsers | default list) }}
allow_everyone_if_no_acl_found = {{ ternary "true" "false" .allowEveryoneIfNoAclFound }}
connections_max_reauth_ms = {{ int64 .connectionsMaxReauthMs }}
{{- end }}
{{- if and $v.sasl.enabled (has "PLAIN" $v.sasl.mechanisms) }}
plain_users_file = "{{ include "sediment.plainUsersDir" $ }}/users.toml"
{{- end }}
{{- end }}
{{- if ne $protocol "PLAINTEXT" }}

# The clients' listener. SEDIMENT_LISTEN and SEDIMENT_ADVERTISE (per pod)
# set its address: the first listener's.
[[listener]]
name = "CLIENT"
listen = {{ include "sediment.hostPort" (list $v.broker.listenAddress $v.broker.kafkaPort) | quote }}
protocol = {{ $protocol | quote }}
{{- if $v.tls.enabled }}
tls_cert = "{{ include "sediment.tlsDir" $ }}/tls.crt"
tls_key = "{{ include "sediment.tlsDir" $ }}/tls.key"
{{- if $v.tls.clientCA.secretName }}
tls_client_ca = "{{ include "sediment.clientCADir" $ }}/ca.crt"
{{- end }}
{{- end }}
{{- if $v.sasl.enabled }}
sasl_mechanisms = {{ toJson $v.sasl.mechanisms }}
{{- end }}
{{- end }}
{{- if $internal }}

# Replication: the followers fetch from their leaders here, in plain text
# (docs/security.md, "In a cluster"). Keep it to the brokers: with
# networkPolicy.enabled only they get in on this port.
[[listener]]
name = "INTERNAL"
listen = {{ include "sediment.hostPort" (list $v.broker.listenAddress $v.broker.internalPort) | quote }}
advertise = {{ printf "%s-%s.%s.%s.svc.%s:%d" (include "sediment.fullname" $) $ordinal (include "sediment.headlessName" $) $.Release.Namespace $v.clusterDomain (int $v.broker.internalPort) | quote }}
protocol = "PLAINTEXT"
{{- end }}
{{- end }}

{{/*
Why the `helm test` pod is not rendered, or empty when it is: with SASL it
needs a user (tests.sasl), with mutual TLS a client certificate
(tests.tls.clientSecretName).
*/}}
{{- define "sediment.testSkipped" -}}
{{- if and .Values.sasl.enabled (not .Values.tests.sasl.username) -}}
sasl.enabled is on and tests.sasl.username is not set
{{- else if and .Values.tls.enabled .Values.tls.clientCA.secretName (not .Values.tests.tls.clientSecretName) -}}
tls.clientCA (mutual TLS) is set and tests.tls.clientSecretName is not
{{- end }}
{{- end }}

{{/* The SASL mechanism of the `helm test` pod (and of NOTES.txt's example). */}}
{{- define "sediment.testMechanism" -}}
{{- $m := default (first .Values.sasl.mechanisms) .Values.tests.sasl.mechanism }}
{{- if not (has $m .Values.sasl.mechanisms) }}
{{- fail (printf "tests.sasl.mechanism %s is not one of sasl.mechanisms %v" $m .Values.sasl.mechanisms) }}
{{- end }}
{{- $m }}
{{- end }}
