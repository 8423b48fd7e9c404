# Sediment brokers and their etcd on plain EC2, for users without Kubernetes.
#
# Every node (broker-N, etcd-N) is four resources with the same key: a
# network interface (its address), a data volume, an instance and the
# volume's attachment. The instance is the only disposable one: replacing it
# (a new AMI, new user data, a dead host) keeps the interface and the volume,
# so broker N comes back as broker N at the same address with its local log.

data "aws_subnet" "node" {
  for_each = toset(var.subnet_ids)
  id       = each.value
}

data "aws_subnet" "lb" {
  for_each = toset(local.lb_subnet_ids)
  id       = each.value
}

locals {
  lb_subnet_ids = var.lb_subnet_ids == null ? var.subnet_ids : var.lb_subnet_ids

  brokers = {
    for i in range(var.broker_count) : "broker-${i}" => {
      role      = "broker"
      index     = i
      subnet_id = var.subnet_ids[i % length(var.subnet_ids)]
      size      = var.broker_volume_size_gib
    }
  }
  etcd_nodes = {
    for i in range(var.etcd_count) : "etcd-${i}" => {
      role      = "etcd"
      index     = i
      subnet_id = var.subnet_ids[i % length(var.subnet_ids)]
      size      = var.etcd_volume_size_gib
    }
  }
  nodes = merge(local.brokers, local.etcd_nodes)
  roles = var.etcd_count > 0 ? ["broker", "etcd"] : ["broker"]

  # etcd nodes are named etcd-N and known to each other and to the brokers by
  # the private address of their interface, which never changes.
  etcd_ips        = [for k in sort(keys(local.etcd_nodes)) : aws_network_interface.node[k].private_ip]
  etcd_endpoints  = join(",", [for ip in local.etcd_ips : "http://${ip}:2379"])
  initial_cluster = join(",", [for k in sort(keys(local.etcd_nodes)) : "${k}=http://${aws_network_interface.node[k].private_ip}:2380"])

  # What each broker tells clients in Metadata: its interface's private DNS
  # name (its address where the VPC gives none).
  advertise = {
    for k, _ in local.brokers : k => "${coalesce(aws_network_interface.node[k].private_dns_name, aws_network_interface.node[k].private_ip)}:${var.kafka_port}"
  }

  etcd_arch         = var.architecture == "arm64" ? "arm64" : "amd64"
  etcd_download_url = coalesce(var.etcd_download_url, "https://github.com/etcd-io/etcd/releases/download/v${var.etcd_version}/etcd-v${var.etcd_version}-linux-${local.etcd_arch}.tar.gz")

  broker_env = merge(var.archive_env, var.broker_env)

  user_data = {
    for k, n in local.nodes : k => n.role == "broker" ? templatefile("${path.module}/templates/broker.sh.tftpl", {
      cluster        = var.name
      broker_id      = n.index
      advertise      = local.advertise[k]
      kafka_port     = var.kafka_port
      http_port      = var.http_port
      archive_url    = var.archive_url
      etcd_endpoints = var.etcd_count > 0 ? local.etcd_endpoints : ""
      env            = local.broker_env
      config_toml    = var.broker_config_toml
      binary_url     = var.sediment_binary_url
      binary_sha256  = var.sediment_binary_sha256
      stop_timeout   = var.stop_timeout_seconds
      data_volume    = templatefile("${path.module}/templates/data-volume.sh.tftpl", { volume_id = aws_ebs_volume.data[k].id, mount_point = "/var/lib/sediment", label = "sediment" })
      }) : templatefile("${path.module}/templates/etcd.sh.tftpl", {
      cluster         = var.name
      node_name       = k
      ip              = aws_network_interface.node[k].private_ip
      initial_cluster = local.initial_cluster
      download_url    = local.etcd_download_url
      sha256          = coalesce(var.etcd_sha256, "none")
      data_volume     = templatefile("${path.module}/templates/data-volume.sh.tftpl", { volume_id = aws_ebs_volume.data[k].id, mount_point = "/var/lib/etcd", label = "etcd" })
    })
  }

  tags = merge(var.tags, { "sediment.io/cluster" = var.name })
}

# --- Security groups: only what each role needs ----------------------------------

resource "aws_security_group" "node" {
  #checkov:skip=CKV2_AWS_5:Both groups are attached, through aws_network_interface.node (security_groups), which checkov does not follow through for_each.
  for_each    = toset(local.roles)
  name        = "${var.name}-${each.key}"
  description = "Sediment ${var.name}: ${each.key} nodes"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-${each.key}" })
}

locals {
  # One entry per rule: the group it belongs to, direction, port, and either
  # CIDR blocks or the group on the other side (peer).
  security_group_rules = merge(
    {
      broker-kafka-from-clients = { group = "broker", type = "ingress", port = var.kafka_port, cidrs = var.client_cidrs, peer = null, description = "Kafka clients (directly and through the load balancer)" }
      broker-kafka-from-brokers = { group = "broker", type = "ingress", port = var.kafka_port, cidrs = [], peer = "broker", description = "Kafka between brokers (replication)" }
      broker-kafka-to-brokers   = { group = "broker", type = "egress", port = var.kafka_port, cidrs = [], peer = "broker", description = "Kafka between brokers (replication)" }
      broker-http-from-lb       = { group = "broker", type = "ingress", port = var.http_port, cidrs = sort(distinct([for s in data.aws_subnet.lb : s.cidr_block])), peer = null, description = "Load balancer health checks on /readyz" }
      broker-https-out          = { group = "broker", type = "egress", port = 443, cidrs = var.egress_cidrs, peer = null, description = "Archive (S3), AWS APIs, binary download" }
    },
    length(var.monitoring_cidrs) == 0 ? {} : {
      broker-http-from-monitoring = { group = "broker", type = "ingress", port = var.http_port, cidrs = var.monitoring_cidrs, peer = null, description = "Monitoring: /metrics, /healthz, /readyz" }
    },
    var.etcd_count == 0 ? {} : {
      broker-etcd-out         = { group = "broker", type = "egress", port = 2379, cidrs = [], peer = "etcd", description = "Brokers to etcd clients port" }
      etcd-client-from-broker = { group = "etcd", type = "ingress", port = 2379, cidrs = [], peer = "broker", description = "Brokers to etcd clients port" }
      etcd-client-from-etcd   = { group = "etcd", type = "ingress", port = 2379, cidrs = [], peer = "etcd", description = "etcdctl on the etcd nodes" }
      etcd-client-to-etcd     = { group = "etcd", type = "egress", port = 2379, cidrs = [], peer = "etcd", description = "etcdctl on the etcd nodes" }
      etcd-peer-from-etcd     = { group = "etcd", type = "ingress", port = 2380, cidrs = [], peer = "etcd", description = "etcd peers" }
      etcd-peer-to-etcd       = { group = "etcd", type = "egress", port = 2380, cidrs = [], peer = "etcd", description = "etcd peers" }
      etcd-https-out          = { group = "etcd", type = "egress", port = 443, cidrs = var.egress_cidrs, peer = null, description = "etcd download, AWS APIs" }
    },
  )
}

resource "aws_security_group_rule" "node" {
  for_each                 = local.security_group_rules
  security_group_id        = aws_security_group.node[each.value.group].id
  type                     = each.value.type
  protocol                 = "tcp"
  from_port                = each.value.port
  to_port                  = each.value.port
  cidr_blocks              = length(each.value.cidrs) == 0 ? null : each.value.cidrs
  source_security_group_id = each.value.peer == null ? null : aws_security_group.node[each.value.peer].id
  description              = each.value.description
}

# --- Nodes -------------------------------------------------------------------------

resource "aws_network_interface" "node" {
  for_each        = local.nodes
  subnet_id       = each.value.subnet_id
  security_groups = [aws_security_group.node[each.value.role].id]
  description     = "Sediment ${var.name} ${each.key}: its address for life"
  tags            = merge(local.tags, { Name = "${var.name}-${each.key}" })
}

resource "aws_ebs_volume" "data" {
  for_each          = local.nodes
  availability_zone = data.aws_subnet.node[each.value.subnet_id].availability_zone
  size              = each.value.size
  type              = var.volume_type
  encrypted         = true
  kms_key_id        = var.ebs_kms_key_arn
  tags              = merge(local.tags, { Name = "${var.name}-${each.key}-data" })
}

# The instance settings sit on aws_instance itself, not in a launch template:
# aws_instance takes no launch_template in provider 3.39 (the one this repo
# validates against), and an auto scaling group cannot give an instance
# a fixed primary network interface, which is what keeps a broker's address.
resource "aws_instance" "node" {
  for_each = local.nodes

  ami                  = var.ami_id
  instance_type        = each.value.role == "broker" ? var.broker_instance_type : var.etcd_instance_type
  iam_instance_profile = each.value.role == "broker" ? var.broker_instance_profile : null
  ebs_optimized        = true
  monitoring           = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_size           = var.root_volume_size_gib
    volume_type           = "gp3"
    encrypted             = true
    kms_key_id            = var.ebs_kms_key_arn
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = "${var.name}-${each.key}-root" })
  }

  network_interface {
    network_interface_id = aws_network_interface.node[each.key].id
    device_index         = 0
  }

  user_data = local.user_data[each.key]
  tags      = merge(local.tags, { Name = "${var.name}-${each.key}", "sediment.io/role" = each.value.role })

  lifecycle {
    precondition {
      condition     = var.broker_count == 1 || var.etcd_count > 0
      error_message = "Several brokers need etcd: set etcd_count to 1, 3 or 5 (0 is for a single broker)."
    }
    precondition {
      condition     = var.etcd_count == 0 || var.etcd_sha256 != null
      error_message = "etcd_sha256 is required with etcd nodes: the SHA-256 of the etcd tarball, from the release's SHA256SUMS."
    }
    precondition {
      condition     = var.kafka_port != var.http_port
      error_message = "kafka_port and http_port must differ."
    }
  }
}

# The volume stays attached until the instance is gone: terminating the
# instance shuts it down first (systemd stops the broker, which flushes and
# exits), then releases the volume. Detaching a mounted volume from a running
# broker is never done.
resource "aws_volume_attachment" "data" {
  for_each     = local.nodes
  device_name  = "/dev/sdf"
  volume_id    = aws_ebs_volume.data[each.key].id
  instance_id  = aws_instance.node[each.key].id
  skip_destroy = true
}

# --- Bootstrap load balancer -------------------------------------------------------

resource "aws_lb" "bootstrap" {
  #checkov:skip=CKV_AWS_91:A network load balancer writes access logs only for TLS listeners; this one forwards plain TCP (the broker speaks PLAINTEXT).
  #checkov:skip=CKV_AWS_150:Deletion protection is lb_deletion_protection, off by default so that terraform destroy tears the cluster down in one go; the load balancer holds no data.
  name                             = "${var.name}-kafka"
  load_balancer_type               = "network"
  internal                         = var.lb_internal
  subnets                          = local.lb_subnet_ids
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = var.lb_deletion_protection
  tags                             = local.tags
}

resource "aws_lb_target_group" "kafka" {
  name                 = "${var.name}-kafka"
  port                 = var.kafka_port
  protocol             = "TCP"
  target_type          = "instance"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  # Only brokers whose /readyz says 200 get new bootstrap connections.
  health_check {
    protocol            = "HTTP"
    port                = tostring(var.http_port)
    path                = "/readyz"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = local.tags
}

resource "aws_lb_listener" "kafka" {
  load_balancer_arn = aws_lb.bootstrap.arn
  port              = var.kafka_port
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.kafka.arn
  }
}

resource "aws_lb_target_group_attachment" "broker" {
  for_each         = local.brokers
  target_group_arn = aws_lb_target_group.kafka.arn
  target_id        = aws_instance.node[each.key].id
  port             = var.kafka_port
}
