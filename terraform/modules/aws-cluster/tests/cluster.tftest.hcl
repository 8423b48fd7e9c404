# The aws-cluster module's logic, on a mock AWS provider: nothing is
# created, every computed value is made up except the ones set here.

mock_provider "aws" {
  mock_data "aws_subnet" {
    defaults = { availability_zone = "eu-west-1a", cidr_block = "10.0.1.0/24" }
  }

  mock_resource "aws_network_interface" {
    defaults = { private_ip = "10.0.1.10", private_dns_name = "ip-10-0-1-10.eu-west-1.compute.internal" }
  }

  mock_resource "aws_ebs_volume" {
    defaults = { id = "vol-0123456789abcdef0" }
  }

  # The provider still validates the listener's ARNs.
  mock_resource "aws_lb" {
    defaults = {
      dns_name = "orders-kafka-0123.elb.eu-west-1.amazonaws.com"
      arn      = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/orders-kafka/0123456789abcdef"
    }
  }

  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/orders-kafka/0123456789abcdef" }
  }
}

variables {
  name                    = "orders"
  vpc_id                  = "vpc-0a1b2c3d"
  subnet_ids              = ["subnet-0a", "subnet-0b", "subnet-0c"]
  client_cidrs            = ["10.20.0.0/16"]
  monitoring_cidrs        = ["10.30.0.0/24"]
  ami_id                  = "ami-0123456789abcdef0"
  archive_url             = "s3://orders-archive/sediment"
  archive_env             = { AWS_REGION = "eu-west-1" }
  broker_instance_profile = "orders-broker"
  sediment_binary_url     = "https://downloads.example.com/sediment-0.1.0-x86_64"
  sediment_binary_sha256  = "0000000000000000000000000000000000000000000000000000000000000001"
  etcd_sha256             = "0000000000000000000000000000000000000000000000000000000000000002"
}

run "three_brokers_three_etcd" {
  assert {
    condition     = keys(aws_instance.node) == ["broker-0", "broker-1", "broker-2", "etcd-0", "etcd-1", "etcd-2"]
    error_message = "Three brokers and three etcd nodes."
  }
  assert {
    condition     = keys(aws_network_interface.node) == keys(aws_instance.node) && keys(aws_ebs_volume.data) == keys(aws_instance.node) && keys(aws_volume_attachment.data) == keys(aws_instance.node)
    error_message = "Every node has its own network interface, data volume and attachment."
  }
  assert {
    condition     = [for k in ["broker-0", "broker-1", "broker-2"] : output.brokers[k].broker_id] == [0, 1, 2]
    error_message = "broker-N is broker id N."
  }
  assert {
    condition     = [for k, n in aws_network_interface.node : n.subnet_id] == ["subnet-0a", "subnet-0b", "subnet-0c", "subnet-0a", "subnet-0b", "subnet-0c"]
    error_message = "Brokers and etcd nodes spread over the subnets."
  }
  assert {
    condition     = alltrue([for k, v in aws_ebs_volume.data : v.encrypted && v.availability_zone == "eu-west-1a"]) && aws_ebs_volume.data["broker-0"].size == 100 && aws_ebs_volume.data["etcd-0"].size == 20
    error_message = "Data volumes are encrypted, in their subnet's zone, sized by role."
  }
  assert {
    condition     = alltrue([for k, v in aws_volume_attachment.data : v.skip_destroy])
    error_message = "A data volume is never detached from a running instance."
  }
  assert {
    condition     = alltrue([for k, i in aws_instance.node : i.metadata_options[0].http_tokens == "required" && i.root_block_device[0].encrypted])
    error_message = "IMDSv2 only, encrypted root volumes."
  }
  assert {
    condition     = aws_instance.node["broker-0"].iam_instance_profile == "orders-broker" && aws_instance.node["etcd-0"].iam_instance_profile == null
    error_message = "Brokers get the archive's instance profile, etcd nodes none."
  }
  assert {
    condition     = aws_lb.bootstrap.name == "orders-kafka" && aws_lb.bootstrap.load_balancer_type == "network" && aws_lb.bootstrap.internal
    error_message = "An internal network load balancer named <name>-kafka."
  }
  assert {
    condition     = keys(aws_lb_target_group_attachment.broker) == ["broker-0", "broker-1", "broker-2"] && aws_lb_target_group.kafka.health_check[0].path == "/readyz" && aws_lb_target_group.kafka.health_check[0].port == "9644"
    error_message = "The load balancer sends bootstrap connections to every ready broker."
  }
  assert {
    condition     = output.bootstrap_address == "orders-kafka-0123.elb.eu-west-1.amazonaws.com:9092"
    error_message = "The bootstrap address is the load balancer's name and the Kafka port."
  }
  assert {
    condition     = output.etcd_endpoints == "http://10.0.1.10:2379,http://10.0.1.10:2379,http://10.0.1.10:2379"
    error_message = "The brokers' --etcd lists every etcd node's client URL."
  }
}

run "broker_user_data_has_the_right_flags" {
  assert {
    condition = alltrue([for flag in [
      "--cluster orders \\",
      "--broker-id 1 \\",
      "--etcd http://10.0.1.10:2379,http://10.0.1.10:2379,http://10.0.1.10:2379 \\",
      "--data-dir /var/lib/sediment \\",
      "--listen 0.0.0.0:9092 \\",
      "--advertise ip-10-0-1-10.eu-west-1.compute.internal:9092 \\",
      "--http-listen 0.0.0.0:9644 \\",
      "--archive s3://orders-archive/sediment\n",
    ] : strcontains(aws_instance.node["broker-1"].user_data, "  ${flag}")])
    error_message = "The broker's unit runs sediment serve with its id, the etcd endpoints, its advertised address and the archive."
  }
  assert {
    condition     = strcontains(aws_instance.node["broker-1"].user_data, "AWS_REGION=\"eu-west-1\"") && strcontains(aws_instance.node["broker-1"].user_data, "nvme-Amazon_Elastic_Block_Store_$volume") && strcontains(aws_instance.node["broker-1"].user_data, "volume=vol0123456789abcdef0")
    error_message = "The broker gets archive_env and mounts its own data volume."
  }
  assert {
    condition     = !strcontains(aws_instance.node["broker-1"].user_data, "--config")
    error_message = "No --config without broker_config_toml."
  }
  assert {
    condition     = strcontains(aws_instance.node["broker-1"].user_data, "echo '0000000000000000000000000000000000000000000000000000000000000001  /usr/local/bin/sediment.download' | sha256sum -c -")
    error_message = "The binary is checked against its SHA-256."
  }
}

run "etcd_user_data_bootstraps_the_cluster" {
  assert {
    condition = alltrue([for flag in [
      "--name etcd-2 \\",
      "--initial-cluster etcd-0=http://10.0.1.10:2380,etcd-1=http://10.0.1.10:2380,etcd-2=http://10.0.1.10:2380 \\",
      "--initial-cluster-token orders \\",
      "--advertise-client-urls http://10.0.1.10:2379 \\",
    ] : strcontains(aws_instance.node["etcd-2"].user_data, "  ${flag}")])
    error_message = "Each etcd node names itself and every member."
  }
  assert {
    condition     = strcontains(aws_instance.node["etcd-2"].user_data, "https://github.com/etcd-io/etcd/releases/download/v3.5.21/etcd-v3.5.21-linux-amd64.tar.gz")
    error_message = "etcd comes from its release for etcd_version and the architecture."
  }
}

run "security_groups_open_only_what_is_needed" {
  assert {
    condition     = keys(aws_security_group.node) == ["broker", "etcd"]
    error_message = "One group per role."
  }
  assert {
    # (jsonencode: a map and an object literal compare as unequal types)
    condition = jsonencode({
      for k, r in aws_security_group_rule.node : k => [r.type, r.from_port, r.to_port, r.cidr_blocks] if r.cidr_blocks != null
      }) == jsonencode({
      broker-kafka-from-clients   = ["ingress", 9092, 9092, ["10.20.0.0/16"]]
      broker-http-from-monitoring = ["ingress", 9644, 9644, ["10.30.0.0/24"]]
      broker-http-from-lb         = ["ingress", 9644, 9644, ["10.0.1.0/24"]]
      broker-https-out            = ["egress", 443, 443, ["0.0.0.0/0"]]
      etcd-https-out              = ["egress", 443, 443, ["0.0.0.0/0"]]
    })
    error_message = "CIDR rules: Kafka from clients, HTTP from monitoring and the load balancer's subnets, HTTPS out; nothing else."
  }
  assert {
    condition = jsonencode({
      for k, r in aws_security_group_rule.node : k => [
        r.type, r.from_port, r.security_group_id == aws_security_group.node[startswith(k, "broker") ? "broker" : "etcd"].id,
        r.source_security_group_id == aws_security_group.node["broker"].id ? "broker" : r.source_security_group_id == aws_security_group.node["etcd"].id ? "etcd" : "other",
      ] if r.cidr_blocks == null
      }) == jsonencode({
      broker-kafka-from-brokers = ["ingress", 9092, true, "broker"]
      broker-kafka-to-brokers   = ["egress", 9092, true, "broker"]
      broker-etcd-out           = ["egress", 2379, true, "etcd"]
      etcd-client-from-broker   = ["ingress", 2379, true, "broker"]
      etcd-client-from-etcd     = ["ingress", 2379, true, "etcd"]
      etcd-client-to-etcd       = ["egress", 2379, true, "etcd"]
      etcd-peer-from-etcd       = ["ingress", 2380, true, "etcd"]
      etcd-peer-to-etcd         = ["egress", 2380, true, "etcd"]
    })
    error_message = "Group rules: Kafka between brokers, etcd clients from brokers (and etcd nodes), etcd peers between etcd nodes only."
  }
  assert {
    condition     = alltrue([for r in aws_security_group_rule.node : r.protocol == "tcp" && r.from_port == r.to_port])
    error_message = "Every rule is one TCP port."
  }
}

run "single_broker_without_etcd" {
  variables {
    broker_count       = 1
    etcd_count         = 0
    etcd_sha256        = null
    monitoring_cidrs   = []
    broker_config_toml = "local_disk_budget_bytes = 42949672960\n"
  }
  assert {
    condition     = keys(aws_instance.node) == ["broker-0"] && keys(aws_security_group.node) == ["broker"]
    error_message = "One broker, no etcd node, no etcd group."
  }
  assert {
    condition     = keys(aws_security_group_rule.node) == ["broker-http-from-lb", "broker-https-out", "broker-kafka-from-brokers", "broker-kafka-from-clients", "broker-kafka-to-brokers"]
    error_message = "No etcd rules and no monitoring rule."
  }
  assert {
    condition     = !strcontains(aws_instance.node["broker-0"].user_data, "--etcd") && output.etcd_endpoints == null
    error_message = "Without etcd, the broker runs with embedded coordination (no --etcd)."
  }
  assert {
    condition     = strcontains(aws_instance.node["broker-0"].user_data, "  --config /etc/sediment/sediment.toml \\") && strcontains(aws_instance.node["broker-0"].user_data, "local_disk_budget_bytes = 42949672960")
    error_message = "broker_config_toml becomes the --config file."
  }
}

run "several_brokers_need_etcd" {
  command = plan
  variables {
    etcd_count = 0
  }
  expect_failures = [aws_instance.node]
}

run "etcd_needs_its_checksum" {
  command = plan
  variables {
    etcd_sha256 = null
  }
  expect_failures = [aws_instance.node]
}

run "bad_inputs_are_refused" {
  command = plan
  variables {
    name                = "Orders_Cluster"
    etcd_count          = 2
    client_cidrs        = ["10.0.0.0/33"]
    sediment_binary_url = "http://downloads.example.com/sediment"
    ami_id              = "ubuntu"
    archive_url         = "orders-archive/sediment"
    archive_env         = { "AWS REGION" = "eu-west-1" }
    egress_cidrs        = []
  }
  expect_failures = [var.name, var.etcd_count, var.client_cidrs, var.sediment_binary_url, var.ami_id, var.archive_url, var.archive_env, var.egress_cidrs]
}
