# --- The cluster ------------------------------------------------------------

variable "name" {
  description = "Cluster name: sediment serve's --cluster (the Kafka cluster id and etcd key prefix) and the prefix of every resource name."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,22}[a-z0-9])?$", var.name))
    error_message = "The name must be 1 to 24 characters of lowercase letters, digits and hyphens, starting and ending with a letter or digit (load balancer names are limited to 32 characters)."
  }
}

variable "broker_count" {
  description = "Number of brokers. Broker N (0-based) is broker id N for its whole life: its network interface (address) and data volume outlive any replacement of its instance. More than one broker needs etcd (etcd_count > 0)."
  type        = number
  default     = 3

  validation {
    condition     = var.broker_count >= 1 && var.broker_count <= 64 && floor(var.broker_count) == var.broker_count
    error_message = "broker_count must be a whole number from 1 to 64."
  }
}

variable "etcd_count" {
  description = "Number of etcd nodes: 3 (or 5) for a cluster that survives losing one (or two); 1 for trying things; 0 for a single broker with embedded coordination (no --etcd)."
  type        = number
  default     = 3

  validation {
    condition     = contains([0, 1, 3, 5], var.etcd_count)
    error_message = "etcd_count must be 0, 1, 3 or 5 (an odd number keeps a quorum)."
  }
}

variable "archive_url" {
  description = "The brokers' --archive: s3://<bucket>/<prefix> (the aws-archive module's archive_url), or any URL sediment serve accepts."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9+.-]*://[^[:space:]]+$", var.archive_url))
    error_message = "archive_url must be a URL with a scheme, for example s3://bucket/prefix."
  }
}

variable "archive_env" {
  description = "Environment variables for the archive's client, for example { AWS_REGION = \"eu-west-1\" } (the aws-archive module's broker_env). Credentials come from the instance profile, not from here."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.archive_env : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", k)) && !can(regex("[\n\r\"\\\\]", v))])
    error_message = "archive_env keys must be environment variable names, and values must not hold newlines, quotes or backslashes."
  }
}

variable "broker_env" {
  description = "More environment variables for the brokers, for example { RUST_LOG = \"info\" } or SEDIMENT_CACHE_BYTES."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.broker_env : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", k)) && !can(regex("[\n\r\"\\\\]", v))])
    error_message = "broker_env keys must be environment variable names, and values must not hold newlines, quotes or backslashes."
  }
}

variable "broker_config_toml" {
  description = "Contents of the brokers' TOML config file (/etc/sediment/sediment.toml, passed with --config), for settings that have no flag: local_disk_budget_bytes, [topic_defaults], ... The flags this module sets win over the file. \"\": no file."
  type        = string
  default     = ""

  validation {
    condition     = !can(regex("(?m)^SEDIMENT_TOML$", var.broker_config_toml))
    error_message = "broker_config_toml must not contain a line \"SEDIMENT_TOML\" (the user data's here-document marker)."
  }
}

variable "kafka_port" {
  description = "Kafka protocol port of the brokers and the bootstrap load balancer."
  type        = number
  default     = 9092

  validation {
    condition     = var.kafka_port >= 1024 && var.kafka_port <= 65535 && floor(var.kafka_port) == var.kafka_port
    error_message = "kafka_port must be from 1024 to 65535 (the broker runs as an unprivileged user)."
  }
}

variable "http_port" {
  description = "Admin HTTP port of the brokers: /healthz, /readyz (the load balancer's health check) and /metrics."
  type        = number
  default     = 9644

  validation {
    condition     = var.http_port >= 1024 && var.http_port <= 65535 && floor(var.http_port) == var.http_port
    error_message = "http_port must be from 1024 to 65535 (the broker runs as an unprivileged user)."
  }
}

variable "stop_timeout_seconds" {
  description = "How long systemd waits for a broker to stop after SIGTERM before killing it. Keep it above the broker's shutdown_timeout_ms (15 s by default) plus the final fsync."
  type        = number
  default     = 30

  validation {
    condition     = var.stop_timeout_seconds >= 5 && var.stop_timeout_seconds <= 600
    error_message = "stop_timeout_seconds must be from 5 to 600."
  }
}

# --- Software -----------------------------------------------------------------

variable "sediment_binary_url" {
  description = "HTTPS URL the instances download the sediment binary from at boot (a release build for the instances' architecture, for example behind a presigned S3 URL)."
  type        = string

  validation {
    condition     = can(regex("^https://[^[:space:]']+$", var.sediment_binary_url))
    error_message = "sediment_binary_url must be an https:// URL without spaces or single quotes."
  }
}

variable "sediment_binary_sha256" {
  description = "SHA-256 of the sediment binary, checked before it is installed."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.sediment_binary_sha256))
    error_message = "sediment_binary_sha256 must be 64 lowercase hex digits."
  }
}

variable "etcd_version" {
  description = "etcd release installed on the etcd nodes."
  type        = string
  default     = "3.5.21"

  validation {
    condition     = can(regex("^3\\.[0-9]+\\.[0-9]+$", var.etcd_version))
    error_message = "etcd_version must be a 3.x release such as 3.5.21."
  }
}

variable "etcd_download_url" {
  description = "URL of the etcd release tarball. null: the etcd project's GitHub release for etcd_version and architecture."
  type        = string
  default     = null

  validation {
    condition     = var.etcd_download_url == null || can(regex("^https://[^[:space:]']+\\.tar\\.gz$", var.etcd_download_url))
    error_message = "etcd_download_url must be an https:// URL of a .tar.gz, or null."
  }
}

variable "etcd_sha256" {
  description = "SHA-256 of the etcd tarball (from the release's SHA256SUMS), checked before it is unpacked. Required when etcd_count > 0."
  type        = string
  default     = null

  validation {
    condition     = var.etcd_sha256 == null || can(regex("^[0-9a-f]{64}$", var.etcd_sha256))
    error_message = "etcd_sha256 must be 64 lowercase hex digits, or null."
  }
}

# --- Machines -------------------------------------------------------------------

variable "ami_id" {
  description = "AMI of every instance: a systemd Linux with curl, sha256sum, blkid and mkfs.ext4 (Amazon Linux 2023, Debian 12, Ubuntu 24.04). Pinned on purpose: a new AMI replaces the instances, so change it when you mean to."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "architecture" {
  description = "CPU architecture of the AMI and instance types: x86_64 or arm64. Picks the etcd download; the sediment binary must match it too."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "root_volume_size_gib" {
  description = "Size of each instance's root volume."
  type        = number
  default     = 20

  validation {
    condition     = var.root_volume_size_gib >= 8
    error_message = "root_volume_size_gib must be at least 8."
  }
}

variable "broker_instance_type" {
  description = "Instance type of the brokers."
  type        = string
  default     = "m6i.large"

  validation {
    condition     = can(regex("^[a-z0-9-]+\\.[a-z0-9]+$", var.broker_instance_type))
    error_message = "broker_instance_type must be an EC2 instance type such as m6i.large."
  }
}

variable "etcd_instance_type" {
  description = "Instance type of the etcd nodes."
  type        = string
  default     = "t3.small"

  validation {
    condition     = can(regex("^[a-z0-9-]+\\.[a-z0-9]+$", var.etcd_instance_type))
    error_message = "etcd_instance_type must be an EC2 instance type such as t3.small."
  }
}

variable "broker_volume_size_gib" {
  description = "Size of each broker's data volume (/var/lib/sediment): the local log, the archive read cache (cache_bytes, 1 GiB by default) and the active segments. Set local_disk_budget_bytes in broker_config_toml below it."
  type        = number
  default     = 100

  validation {
    condition     = var.broker_volume_size_gib >= 10 && var.broker_volume_size_gib <= 16384
    error_message = "broker_volume_size_gib must be from 10 to 16384."
  }
}

variable "etcd_volume_size_gib" {
  description = "Size of each etcd node's data volume (/var/lib/etcd)."
  type        = number
  default     = 20

  validation {
    condition     = var.etcd_volume_size_gib >= 1 && var.etcd_volume_size_gib <= 16384
    error_message = "etcd_volume_size_gib must be from 1 to 16384."
  }
}

variable "volume_type" {
  description = "EBS type of the data volumes."
  type        = string
  default     = "gp3"

  validation {
    condition     = contains(["gp3", "gp2", "io1", "io2", "st1"], var.volume_type)
    error_message = "volume_type must be gp3, gp2, io1, io2 or st1."
  }
}

variable "ebs_kms_key_arn" {
  description = "KMS key for the data and root volumes. null: the account's default EBS key. The volumes are encrypted either way."
  type        = string
  default     = null

  validation {
    condition     = var.ebs_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.ebs_kms_key_arn))
    error_message = "ebs_kms_key_arn must be a KMS key ARN, or null."
  }
}

variable "broker_instance_profile" {
  description = "Name of the instance profile of the brokers: their access to the archive (the aws-archive module's instance_profile_name). null: none, and the archive needs credentials from archive_env."
  type        = string
  default     = null
}

# --- Network --------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Private subnets, ideally one per availability zone. Broker N and etcd node N go to subnet N modulo their number, so brokers and etcd nodes spread over the zones. Changing the list moves (replaces) nodes."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids must hold at least one subnet id (subnet-...)."
  }
}

variable "client_cidrs" {
  description = "CIDR blocks of the Kafka clients: allowed to the brokers' Kafka port, directly and through the load balancer (which keeps the client's address)."
  type        = list(string)

  validation {
    condition     = length(var.client_cidrs) >= 1 && alltrue([for c in var.client_cidrs : can(cidrhost(c, 0))])
    error_message = "client_cidrs must hold at least one CIDR block such as 10.0.0.0/16."
  }
}

variable "monitoring_cidrs" {
  description = "CIDR blocks allowed to the brokers' admin HTTP port (Prometheus scraping /metrics). []: none besides the load balancer's health checks."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.monitoring_cidrs : can(cidrhost(c, 0))])
    error_message = "monitoring_cidrs must be CIDR blocks such as 10.0.0.0/16."
  }
}

variable "egress_cidrs" {
  description = "Where the instances may open HTTPS connections: the archive (S3), the binary downloads, the AWS APIs. Narrow it with a proxy or VPC endpoints."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.egress_cidrs) >= 1 && alltrue([for c in var.egress_cidrs : can(cidrhost(c, 0))])
    error_message = "egress_cidrs must hold at least one CIDR block: the instances download their software and reach the archive over HTTPS."
  }
}

variable "lb_internal" {
  description = "Make the bootstrap load balancer internal (reachable from the VPC and what is routed to it). A public one is no use without per-broker public addresses: clients connect to each broker's advertised private address after bootstrap."
  type        = bool
  default     = true
}

variable "lb_subnet_ids" {
  description = "Subnets of the bootstrap load balancer. null: subnet_ids."
  type        = list(string)
  default     = null

  validation {
    condition     = var.lb_subnet_ids == null || alltrue([for s in coalesce(var.lb_subnet_ids, []) : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "lb_subnet_ids must be subnet ids (subnet-...), or null."
  }
}

variable "lb_deletion_protection" {
  description = "Protect the bootstrap load balancer (its DNS name is what clients are configured with) from deletion. terraform destroy fails while it is on."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
