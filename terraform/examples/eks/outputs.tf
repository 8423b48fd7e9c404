output "archive_url" {
  description = "The brokers' archive URL (the chart's archive.url)."
  value       = module.archive.archive_url
}

output "bucket_name" {
  description = "Name of the archive bucket."
  value       = module.archive.bucket_name
}

output "role_arn" {
  description = "ARN of the brokers' IAM role, trusted by the service account <namespace>/<service_account_name>."
  value       = module.archive.role_arn
}

output "helm_values" {
  description = "Values for helm/sediment that use this archive and role, as YAML: `terraform output -raw helm_values > values-eks.yaml`."
  value       = yamlencode(local.chart_values)
}

output "helm_install_command" {
  description = "The helm install that helm.tf does, for install_chart = false (run from the repo root, after writing helm_values to values-eks.yaml)."
  value       = "helm upgrade --install ${var.release_name} ./helm/sediment --namespace ${var.namespace} --create-namespace -f values-eks.yaml"
}

output "bootstrap_address" {
  description = "Bootstrap address for Kafka clients inside the EKS cluster (the chart's client Service)."
  value       = "${strcontains(var.release_name, "sediment") ? var.release_name : "${var.release_name}-sediment"}.${var.namespace}.svc.cluster.local:9092"
}
