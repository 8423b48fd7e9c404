variable "name" {
  description = "Name of this archive, used in resource names: the IAM role is \"<name>-broker\", a generated bucket name starts with \"<name>-archive-\". Typically the Sediment cluster name."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$", var.name))
    error_message = "The name must be 1 to 32 characters of lowercase letters, digits and hyphens, starting and ending with a letter or digit."
  }
}

variable "bucket_name" {
  description = "Name of the bucket to create. null: a unique name starting with \"<name>-archive-\"."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "A bucket name is 3 to 63 characters of lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit."
  }
}

variable "prefix" {
  description = "Key prefix of the archive inside the bucket, without leading or trailing slash (\"\" for the whole bucket). The brokers' archive URL is s3://<bucket>/<prefix>, and their IAM role can touch nothing outside it."
  type        = string
  default     = "sediment"

  validation {
    condition     = can(regex("^([A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*)?$", var.prefix))
    error_message = "The prefix must be path segments of letters, digits, \"_\", \".\", \"=\" and \"-\" separated by single slashes, with no leading or trailing slash (or \"\")."
  }
}

variable "object_expiration_days" {
  description = "Expire archived objects under <prefix>/topic= this many days after they were written. null: never (the brokers apply each topic's retention.ms and retention.bytes to the archive themselves). A backstop only: it also expires the manifest of a partition that has written nothing for this long, so set it well above the longest retention.ms of any topic, and leave it null if any topic keeps data forever. Cluster state under <prefix>/_sediment is never expired."
  type        = number
  default     = null

  validation {
    condition     = var.object_expiration_days == null || try(var.object_expiration_days >= 1 && floor(var.object_expiration_days) == var.object_expiration_days, false)
    error_message = "object_expiration_days must be a whole number of days, at least 1, or null."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Abort multipart uploads left incomplete (a broker stopped in the middle of an upload) after this many days, so their parts stop costing storage."
  type        = number
  default     = 1

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1 && floor(var.abort_incomplete_multipart_upload_days) == var.abort_incomplete_multipart_upload_days
    error_message = "abort_incomplete_multipart_upload_days must be a whole number of days, at least 1."
  }
}

variable "versioning_enabled" {
  description = "Keep overwritten and deleted objects as noncurrent versions for noncurrent_version_expiration_days: a window to recover from a mistaken delete. The brokers themselves never overwrite an object."
  type        = bool
  default     = true
}

variable "noncurrent_version_expiration_days" {
  description = "With versioning, delete noncurrent versions (what retention and topic deletion removed) after this many days."
  type        = number
  default     = 7

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number of days, at least 1."
  }
}

variable "kms_key_arn" {
  description = "ARN of a KMS key for server-side encryption (SSE-KMS, with an S3 bucket key). null: SSE-S3 (AES-256, keys managed by S3). With a key, the brokers' role may also use it to encrypt and decrypt."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key or alias ARN (arn:aws:kms:<region>:<account>:key/<id>), or null."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy delete the bucket with every archived record in it. Leave false outside tests: the archive is the cluster's durable copy."
  type        = bool
  default     = false
}

variable "oidc_provider_arn" {
  description = "IRSA: ARN of the EKS cluster's IAM OIDC provider (arn:aws:iam::<account>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<id>). The role then trusts the Kubernetes service account kubernetes_namespace/kubernetes_service_account. null: no Kubernetes trust."
  type        = string
  default     = null

  validation {
    condition     = var.oidc_provider_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must be an IAM OIDC provider ARN (arn:aws:iam::<account>:oidc-provider/<issuer host and path>), or null."
  }
}

variable "kubernetes_namespace" {
  description = "IRSA: namespace of the brokers' service account (the Helm release's namespace)."
  type        = string
  default     = "streaming"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.kubernetes_namespace))
    error_message = "kubernetes_namespace must be a DNS label: up to 63 lowercase letters, digits and hyphens."
  }
}

variable "kubernetes_service_account" {
  description = "IRSA: name of the brokers' service account (the chart's serviceAccount.name; by default the chart names it after the release)."
  type        = string
  default     = "sediment"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", var.kubernetes_service_account))
    error_message = "kubernetes_service_account must be a DNS subdomain: lowercase letters, digits, \"-\" and \".\", at most 253 characters."
  }
}

variable "create_instance_profile" {
  description = "Let EC2 instances assume the role and create an instance profile for them (brokers on plain EC2, as in the aws-cluster module)."
  type        = bool
  default     = false
}

variable "permissions_boundary_arn" {
  description = "ARN of a permissions boundary policy for the role, where the account requires one. null: none."
  type        = string
  default     = null

  validation {
    condition     = var.permissions_boundary_arn == null || can(regex("^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+$", var.permissions_boundary_arn))
    error_message = "permissions_boundary_arn must be an IAM policy ARN, or null."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
