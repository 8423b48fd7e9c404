output "bucket_name" {
  description = "Name of the archive bucket."
  value       = aws_s3_bucket.archive.bucket
}

output "bucket_arn" {
  description = "ARN of the archive bucket."
  value       = local.bucket_arn
}

output "region" {
  description = "Region of the bucket: the brokers' AWS_REGION."
  value       = aws_s3_bucket.archive.region
}

output "archive_url" {
  description = "The brokers' archive URL, s3://<bucket>/<prefix>: the chart's archive.url, sediment serve's --archive."
  value       = local.archive_url
}

output "broker_env" {
  description = "Environment the brokers need besides the URL (AWS_REGION): the chart's archive.env, or the aws-cluster module's archive_env."
  value       = { AWS_REGION = aws_s3_bucket.archive.region }
}

output "role_arn" {
  description = "ARN of the brokers' IAM role: the chart's archive.workloadIdentity.awsRoleArn on EKS."
  value       = aws_iam_role.broker.arn
}

output "role_name" {
  description = "Name of the brokers' IAM role, for attaching more policies (for example AmazonSSMManagedInstanceCore on EC2)."
  value       = aws_iam_role.broker.name
}

output "instance_profile_name" {
  description = "Name of the EC2 instance profile for the brokers (the aws-cluster module's broker_instance_profile), or null without create_instance_profile."
  value       = var.create_instance_profile ? aws_iam_instance_profile.broker[0].name : null
}

output "kubernetes_service_account" {
  description = "The service account the role trusts, as \"<namespace>/<name>\", or null without oidc_provider_arn."
  value       = var.oidc_provider_arn == null ? null : "${var.kubernetes_namespace}/${var.kubernetes_service_account}"
}
