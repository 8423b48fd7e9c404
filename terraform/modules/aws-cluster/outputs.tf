output "bootstrap_address" {
  description = "host:port of the bootstrap load balancer: the clients' bootstrap.servers. After bootstrap, clients connect to each broker's advertised address (broker_addresses), so they must reach those too."
  value       = "${aws_lb.bootstrap.dns_name}:${var.kafka_port}"
}

output "brokers" {
  description = "Each broker by node name (broker-N): its broker id, advertised address, instance id, network interface id, private IP and data volume id."
  value = {
    for k, n in local.brokers : k => {
      broker_id            = n.index
      advertised_address   = local.advertise[k]
      instance_id          = aws_instance.node[k].id
      network_interface_id = aws_network_interface.node[k].id
      private_ip           = aws_network_interface.node[k].private_ip
      data_volume_id       = aws_ebs_volume.data[k].id
    }
  }
}

output "etcd_endpoints" {
  description = "The brokers' --etcd value (comma-separated http://<ip>:2379), or null without etcd nodes."
  value       = var.etcd_count > 0 ? local.etcd_endpoints : null
}

output "etcd_nodes" {
  description = "Each etcd node by name (etcd-N): instance id, private IP and data volume id."
  value = {
    for k, _ in local.etcd_nodes : k => {
      instance_id    = aws_instance.node[k].id
      private_ip     = aws_network_interface.node[k].private_ip
      data_volume_id = aws_ebs_volume.data[k].id
    }
  }
}

output "security_group_ids" {
  description = "Security group ids by role (broker, etcd), to allow more sources with your own rules."
  value       = { for role, sg in aws_security_group.node : role => sg.id }
}

output "load_balancer_arn" {
  description = "ARN of the bootstrap network load balancer."
  value       = aws_lb.bootstrap.arn
}

output "target_group_arn" {
  description = "ARN of the brokers' target group (health check: HTTP /readyz on http_port)."
  value       = aws_lb_target_group.kafka.arn
}
