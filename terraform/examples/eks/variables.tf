variable "region" {
  description = "AWS region of the EKS cluster and the archive bucket."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region such as eu-west-1."
  }
}

variable "eks_cluster_name" {
  description = "Name of the existing EKS cluster, which must have an IAM OIDC provider (eksctl utils associate-iam-oidc-provider, or the EKS module's enable_irsa)."
  type        = string

  validation {
    condition     = can(regex("^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$", var.eks_cluster_name))
    error_message = "eks_cluster_name must be an EKS cluster name: up to 100 letters, digits, \"-\" and \"_\"."
  }
}

variable "cluster_name" {
  description = "Name of the Sediment cluster: the chart's broker.clusterName, the archive prefix in the bucket and the prefix of the AWS resource names (checked by the aws-archive module)."
  type        = string
  default     = "sediment"
}

variable "namespace" {
  description = "Kubernetes namespace of the release (created when missing)."
  type        = string
  default     = "streaming"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS label."
  }
}

variable "release_name" {
  description = "Helm release name."
  type        = string
  default     = "sediment"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$", var.release_name))
    error_message = "release_name must be a DNS label of at most 53 characters."
  }
}

variable "service_account_name" {
  description = "Name of the brokers' Kubernetes service account: the chart creates it with this name and the archive role trusts it."
  type        = string
  default     = "sediment"
}

variable "image_repository" {
  description = "Registry and repository of the broker image built from the repo's Dockerfile (no image is published)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]+([._/:-][a-z0-9]+)*$", var.image_repository))
    error_message = "image_repository must be an image reference without tag, such as 123456789012.dkr.ecr.eu-west-1.amazonaws.com/sediment."
  }
}

variable "image_tag" {
  description = "Tag of the broker image. \"\": the chart's appVersion."
  type        = string
  default     = ""
}

variable "install_chart" {
  description = "Install the chart with the helm provider (helm.tf). false: only create the archive, and install the chart yourself with the helm_values output."
  type        = bool
  default     = true
}

variable "object_expiration_days" {
  description = "The aws-archive module's object_expiration_days: a backstop expiry of archived records; read its README before setting it."
  type        = number
  default     = null
}

variable "tags" {
  description = "Tags on every AWS resource."
  type        = map(string)
  default     = {}
}
