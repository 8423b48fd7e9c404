# The aws-archive module's logic, on a mock AWS provider: nothing is
# created, every computed value is made up except the ones overridden here.

mock_provider "aws" {
  override_data {
    target = data.aws_partition.current
    values = { partition = "aws" }
  }

  mock_resource "aws_s3_bucket" {
    defaults = { region = "eu-west-1" }
  }
}

variables {
  name              = "orders"
  bucket_name       = "orders-archive"
  oidc_provider_arn = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
}

run "names_and_outputs" {
  assert {
    condition     = aws_s3_bucket.archive.bucket == "orders-archive"
    error_message = "The bucket takes bucket_name."
  }
  assert {
    condition     = output.archive_url == "s3://orders-archive/sediment"
    error_message = "The archive URL is s3://<bucket>/<prefix>."
  }
  assert {
    condition     = aws_iam_role.broker.name == "orders-broker" && output.role_name == "orders-broker"
    error_message = "The role is named <name>-broker."
  }
  assert {
    condition     = length(aws_iam_instance_profile.broker) == 0 && output.instance_profile_name == null
    error_message = "No instance profile unless create_instance_profile is set."
  }
  assert {
    condition     = output.broker_env == { AWS_REGION = "eu-west-1" }
    error_message = "The brokers get the bucket's region as AWS_REGION."
  }
  assert {
    condition     = output.kubernetes_service_account == "streaming/sediment"
    error_message = "The trusted service account defaults to streaming/sediment."
  }
}

run "bucket_is_private_encrypted_and_tls_only" {
  assert {
    condition = alltrue([
      aws_s3_bucket_public_access_block.archive.block_public_acls,
      aws_s3_bucket_public_access_block.archive.block_public_policy,
      aws_s3_bucket_public_access_block.archive.ignore_public_acls,
      aws_s3_bucket_public_access_block.archive.restrict_public_buckets,
    ])
    error_message = "Every public access setting is blocked."
  }
  assert {
    condition     = aws_s3_bucket.archive.server_side_encryption_configuration[0].rule[0].apply_server_side_encryption_by_default[0].sse_algorithm == "AES256"
    error_message = "SSE-S3 without a KMS key."
  }
  assert {
    condition = anytrue([
      for s in jsondecode(aws_s3_bucket_policy.archive.policy).Statement :
      s.Effect == "Deny" && s.Principal == "*" && s.Action == "s3:*"
      && try(s.Condition.Bool["aws:SecureTransport"], "") == "false"
      && toset(s.Resource) == toset(["arn:aws:s3:::orders-archive", "arn:aws:s3:::orders-archive/*"])
    ])
    error_message = "The bucket policy denies every request without TLS, on the bucket and its objects."
  }
  assert {
    condition = alltrue([
      for s in jsondecode(aws_s3_bucket_policy.archive.policy).Statement : s.Effect == "Deny"
    ])
    error_message = "The bucket policy only denies: access is granted by IAM."
  }
}

run "lifecycle_rules" {
  assert {
    condition = anytrue([
      for r in aws_s3_bucket.archive.lifecycle_rule :
      r.enabled && r.abort_incomplete_multipart_upload_days == 1 && try(r.prefix, null) == null
    ])
    error_message = "Incomplete multipart uploads are aborted after a day, bucket-wide."
  }
  assert {
    condition     = length([for r in aws_s3_bucket.archive.lifecycle_rule : r if length(r.expiration) > 0]) == 0
    error_message = "No object expires without object_expiration_days."
  }
  assert {
    condition     = aws_s3_bucket.archive.versioning[0].enabled
    error_message = "Versioning is on by default."
  }
}

run "role_is_limited_to_the_prefix" {
  assert {
    condition = toset([
      for s in jsondecode(aws_iam_role_policy.archive.policy).Statement : s.Resource
      ]) == toset([
      "arn:aws:s3:::orders-archive",
      "arn:aws:s3:::orders-archive/sediment/*",
    ])
    error_message = "The role's statements name the bucket (for listing) and the prefix's objects, nothing else."
  }
  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.archive.policy).Statement :
      s.Condition.StringLike["s3:prefix"] == "sediment/*" if s.Action == "s3:ListBucket"
    ])
    error_message = "Listing is allowed under the prefix only."
  }
  assert {
    condition = toset(flatten([
      for s in jsondecode(aws_iam_role_policy.archive.policy).Statement : s.Action if s.Resource == "arn:aws:s3:::orders-archive/sediment/*"
    ])) == toset(["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"])
    error_message = "On the prefix's objects: get, put, delete and abort multipart uploads only."
  }
  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.archive.policy).Statement : s.Effect == "Allow" && !contains(flatten([s.Action]), "s3:*")
    ])
    error_message = "No wildcard action."
  }
}

run "irsa_trust" {
  assert {
    condition = jsondecode(aws_iam_role.broker.assume_role_policy).Statement == [{
      Sid       = "KubernetesServiceAccount"
      Effect    = "Allow"
      Principal = { Federated = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE" }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE:sub" = "system:serviceaccount:streaming:sediment"
          "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE:aud" = "sts.amazonaws.com"
        }
      }
    }]
    error_message = "Only the one service account of the EKS cluster may assume the role."
  }
}

run "ec2_instance_profile" {
  variables {
    oidc_provider_arn       = null
    create_instance_profile = true
  }
  assert {
    condition     = length(aws_iam_instance_profile.broker) == 1 && output.instance_profile_name == "orders-broker"
    error_message = "create_instance_profile makes one instance profile, named like the role."
  }
  assert {
    condition = [for s in jsondecode(aws_iam_role.broker.assume_role_policy).Statement : s.Principal] == [
      { Service = "ec2.amazonaws.com" },
    ]
    error_message = "Only EC2 may assume the role."
  }
}

run "expiry_and_kms" {
  variables {
    object_expiration_days = 30
    kms_key_arn            = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  }
  assert {
    condition = [
      for r in aws_s3_bucket.archive.lifecycle_rule : [r.prefix, r.expiration[0].days] if length(r.expiration) > 0
    ] == [["sediment/topic=", 30]]
    error_message = "Records expire under <prefix>/topic= only, never the cluster state under _sediment/."
  }
  assert {
    condition     = aws_s3_bucket.archive.server_side_encryption_configuration[0].rule[0].apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms"
    error_message = "A KMS key switches the bucket to SSE-KMS."
  }
  assert {
    condition = anytrue([
      for s in jsondecode(aws_iam_role_policy.archive.policy).Statement :
      s.Resource == "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    ])
    error_message = "The role may use the bucket's KMS key."
  }
}

run "whole_bucket" {
  variables {
    prefix = ""
  }
  assert {
    condition     = output.archive_url == "s3://orders-archive"
    error_message = "With prefix \"\", the URL is the bucket."
  }
  assert {
    condition = toset([
      for s in jsondecode(aws_iam_role_policy.archive.policy).Statement : s.Resource
    ]) == toset(["arn:aws:s3:::orders-archive", "arn:aws:s3:::orders-archive/*"])
    error_message = "With prefix \"\", the role covers the bucket."
  }
}

run "generated_bucket_name" {
  command = plan
  variables {
    bucket_name = null
  }
  assert {
    condition     = aws_s3_bucket.archive.bucket_prefix == "orders-archive-"
    error_message = "Without bucket_name, the bucket's name starts with <name>-archive-."
  }
}

run "no_trust_is_refused" {
  command = plan
  variables {
    oidc_provider_arn = null
  }
  expect_failures = [aws_iam_role.broker]
}

run "bad_inputs_are_refused" {
  command = plan
  variables {
    name                   = "Orders!"
    prefix                 = "/sediment/"
    object_expiration_days = 0
    kms_key_arn            = "not-an-arn"
  }
  expect_failures = [var.name, var.prefix, var.object_expiration_days, var.kms_key_arn]
}
