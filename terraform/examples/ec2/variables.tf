# Inputs passed through to the modules are checked by the modules' own
# validation blocks; only this example's own inputs are checked here.

variable "region" {
  description = "AWS region of the cluster and its archive."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region such as eu-west-1."
  }
}

variable "cluster_name" {
  description = "Name of the Sediment cluster (--cluster), the archive prefix and the prefix of every resource name."
  type        = string
  default     = "sediment"
}

variable "vpc_id" {
  description = "Existing VPC for the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Existing private subnets, one per availability zone (three for three brokers and three etcd nodes in three zones)."
  type        = list(string)
}

variable "client_cidrs" {
  description = "CIDR blocks of the Kafka clients."
  type        = list(string)
}

variable "monitoring_cidrs" {
  description = "CIDR blocks of Prometheus (the brokers' /metrics)."
  type        = list(string)
  default     = []
}

variable "ami_id" {
  description = "AMI for every instance, for example the current Amazon Linux 2023 one: aws ssm get-parameter --name /aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64."
  type        = string
}

variable "broker_count" {
  description = "Number of brokers."
  type        = number
  default     = 3
}

variable "etcd_count" {
  description = "Number of etcd nodes (0 for a single broker with embedded coordination)."
  type        = number
  default     = 3
}

variable "sediment_binary_url" {
  description = "HTTPS URL of a sediment release binary for the AMI's architecture."
  type        = string
}

variable "sediment_binary_sha256" {
  description = "SHA-256 of that binary (sha256sum target/release/sediment)."
  type        = string
}

variable "etcd_sha256" {
  description = "SHA-256 of the etcd release tarball (the aws-cluster module's etcd_version), from the release's SHA256SUMS."
  type        = string
  default     = null
}

variable "broker_config_toml" {
  description = "The brokers' TOML config file, for settings without a flag (local_disk_budget_bytes, [topic_defaults], ...)."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Tags on every AWS resource."
  type        = map(string)
  default     = {}
}
