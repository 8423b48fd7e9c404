# The chart, installed by the helm provider. This file is the only user of
# hashicorp/helm: the repo's offline checks cannot install that provider, so
# they validate this example without this file (.ci/terraform_checks.py).

terraform {
  required_providers {
    helm = {
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }
  }
}

data "aws_eks_cluster_auth" "this" {
  name = var.eks_cluster_name
}

provider "helm" {
  kubernetes = {
    host                   = data.aws_eks_cluster.this.endpoint
    cluster_ca_certificate = base64decode(data.aws_eks_cluster.this.certificate_authority[0].data)
    token                  = data.aws_eks_cluster_auth.this.token
  }
}

resource "helm_release" "sediment" {
  count = var.install_chart ? 1 : 0

  name             = var.release_name
  namespace        = var.namespace
  create_namespace = true
  chart            = "${path.module}/../../../helm/sediment"
  values           = [yamlencode(local.chart_values)]
  wait             = true
  timeout          = 600
}
