# Sediment on an existing EKS cluster: the archive bucket and the brokers'
# IRSA role from the aws-archive module, and the Helm chart from this repo
# (helm/sediment) configured to use them. helm.tf installs the chart through
# the helm provider; without it (install_chart = false), the helm_values
# output is the values file for a `helm install` of your own.

provider "aws" {
  region = var.region
}

data "aws_eks_cluster" "this" {
  name = var.eks_cluster_name
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  # The cluster's IAM OIDC provider, named after its issuer URL.
  oidc_issuer       = trimprefix(data.aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://")
  oidc_provider_arn = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:oidc-provider/${local.oidc_issuer}"
}

module "archive" {
  source = "../../modules/aws-archive"

  name                       = var.cluster_name
  prefix                     = var.cluster_name
  object_expiration_days     = var.object_expiration_days
  oidc_provider_arn          = local.oidc_provider_arn
  kubernetes_namespace       = var.namespace
  kubernetes_service_account = var.service_account_name
  tags                       = var.tags
}

locals {
  # Values of helm/sediment (docs/deploy.md, "Chart values").
  chart_values = {
    image = {
      repository = var.image_repository
      tag        = var.image_tag
    }
    broker = {
      clusterName = var.cluster_name
    }
    archive = {
      url              = module.archive.archive_url
      env              = module.archive.broker_env
      workloadIdentity = { awsRoleArn = module.archive.role_arn }
    }
    serviceAccount = {
      create = true
      name   = var.service_account_name
    }
  }
}
