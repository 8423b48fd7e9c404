# A Sediment cluster on plain EC2: the archive bucket and the brokers' role
# (aws-archive, with an instance profile), three brokers and three etcd nodes
# behind an internal network load balancer (aws-cluster), in an existing VPC.

provider "aws" {
  region = var.region
}

module "archive" {
  source = "../../modules/aws-archive"

  name                    = var.cluster_name
  prefix                  = var.cluster_name
  create_instance_profile = true
  tags                    = var.tags
}

module "cluster" {
  source = "../../modules/aws-cluster"

  name         = var.cluster_name
  broker_count = var.broker_count
  etcd_count   = var.etcd_count

  archive_url             = module.archive.archive_url
  archive_env             = module.archive.broker_env
  broker_instance_profile = module.archive.instance_profile_name
  broker_config_toml      = var.broker_config_toml

  sediment_binary_url    = var.sediment_binary_url
  sediment_binary_sha256 = var.sediment_binary_sha256
  etcd_sha256            = var.etcd_sha256
  ami_id                 = var.ami_id

  vpc_id           = var.vpc_id
  subnet_ids       = var.subnet_ids
  client_cidrs     = var.client_cidrs
  monitoring_cidrs = var.monitoring_cidrs

  tags = var.tags
}
