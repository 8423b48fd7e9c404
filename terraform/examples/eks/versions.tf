terraform {
  required_version = ">= 1.5.0"

  # hashicorp/helm is required in helm.tf, next to its only use.
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 3.39.0"
    }
  }
}
