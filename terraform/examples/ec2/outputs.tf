output "bootstrap_address" {
  description = "bootstrap.servers for Kafka clients (the internal load balancer)."
  value       = module.cluster.bootstrap_address
}

output "brokers" {
  description = "Each broker's id, advertised address, instance, interface and data volume."
  value       = module.cluster.brokers
}

output "etcd_endpoints" {
  description = "The etcd client URLs the brokers use (null without etcd)."
  value       = module.cluster.etcd_endpoints
}

output "archive_url" {
  description = "The brokers' archive URL."
  value       = module.archive.archive_url
}

output "bucket_name" {
  description = "Name of the archive bucket."
  value       = module.archive.bucket_name
}

output "broker_role_name" {
  description = "The brokers' IAM role, to attach more policies (for example AmazonSSMManagedInstanceCore for Session Manager)."
  value       = module.archive.role_name
}
