# The archive bucket of a Sediment cluster and the IAM role its brokers use.
#
# The S3 settings are aws_s3_bucket's inline blocks (the provider 3.x way),
# so this module validates against provider 3.39 as well as the current one.

data "aws_partition" "current" {}

locals {
  partition = data.aws_partition.current.partition
  bucket    = aws_s3_bucket.archive.bucket

  # Keys of the archive: "<prefix>/..." or, with prefix "", the whole bucket.
  key_prefix  = var.prefix == "" ? "" : "${var.prefix}/"
  bucket_arn  = "arn:${local.partition}:s3:::${local.bucket}"
  objects_arn = "arn:${local.partition}:s3:::${local.bucket}/${local.key_prefix}*"
  archive_url = var.prefix == "" ? "s3://${local.bucket}" : "s3://${local.bucket}/${var.prefix}"

  # IRSA: the issuer is the provider ARN's path after "oidc-provider/".
  oidc_issuer = var.oidc_provider_arn == null ? null : element(split("oidc-provider/", var.oidc_provider_arn), 1)

  role_name = "${var.name}-broker"
}

resource "aws_s3_bucket" "archive" {
  #checkov:skip=CKV_AWS_18:Server access logs need a second bucket whose policy is the account's business; enable them there (or use CloudTrail data events) and point this bucket at it.
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles the storage bill and needs a bucket in another region; the archive is already stored redundantly across zones by S3.
  #checkov:skip=CKV_AWS_145:SSE-S3 by default, so no key has to exist first; set kms_key_arn for SSE-KMS.
  #checkov:skip=CKV2_AWS_62:The brokers poll the archive through manifests and need no event notifications.

  bucket        = var.bucket_name
  bucket_prefix = var.bucket_name == null ? "${var.name}-archive-" : null
  force_destroy = var.force_destroy

  versioning {
    enabled = var.versioning_enabled
  }

  server_side_encryption_configuration {
    rule {
      apply_server_side_encryption_by_default {
        sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
        kms_master_key_id = var.kms_key_arn
      }
      bucket_key_enabled = var.kms_key_arn != null
    }
  }

  lifecycle_rule {
    id                                     = "abort-incomplete-multipart-uploads"
    enabled                                = true
    abort_incomplete_multipart_upload_days = var.abort_incomplete_multipart_upload_days
  }

  lifecycle_rule {
    id      = "expire-noncurrent-versions"
    enabled = var.versioning_enabled

    noncurrent_version_expiration {
      days = var.noncurrent_version_expiration_days
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.object_expiration_days == null ? [] : [var.object_expiration_days]
    content {
      id      = "expire-archived-objects"
      enabled = true
      # Only records (data files and manifests), never the cluster state
      # copies under <prefix>/_sediment/.
      prefix = "${local.key_prefix}topic="

      expiration {
        days = lifecycle_rule.value
      }
    }
  }

  tags = var.tags
}

resource "aws_s3_bucket_public_access_block" "archive" {
  bucket                  = aws_s3_bucket.archive.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# Refuse every request that is not over TLS 1.2 or later, whoever makes it.
resource "aws_s3_bucket_policy" "archive" {
  bucket = aws_s3_bucket.archive.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "DenyPlainHttp"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [local.bucket_arn, "${local.bucket_arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        Sid       = "DenyTlsBelow12"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [local.bucket_arn, "${local.bucket_arn}/*"]
        Condition = { NumericLessThan = { "s3:TlsVersion" = "1.2" } }
      },
    ]
  })

  # A bucket policy and the public access block both change the bucket's
  # policy state; S3 refuses concurrent changes.
  depends_on = [aws_s3_bucket_public_access_block.archive]
}

# Who may become the brokers' role: pods of one Kubernetes service account
# (IRSA) and/or EC2 instances through the instance profile.
resource "aws_iam_role" "broker" {
  name                 = local.role_name
  description          = "Sediment brokers of ${var.name}: read and write ${local.archive_url}"
  permissions_boundary = var.permissions_boundary_arn
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      var.oidc_provider_arn == null ? [] : [{
        Sid       = "KubernetesServiceAccount"
        Effect    = "Allow"
        Principal = { Federated = var.oidc_provider_arn }
        Action    = "sts:AssumeRoleWithWebIdentity"
        Condition = {
          StringEquals = {
            "${local.oidc_issuer}:sub" = "system:serviceaccount:${var.kubernetes_namespace}:${var.kubernetes_service_account}"
            "${local.oidc_issuer}:aud" = "sts.amazonaws.com"
          }
        }
      }],
      var.create_instance_profile ? [{
        Sid       = "Ec2Instances"
        Effect    = "Allow"
        Principal = { Service = "ec2.amazonaws.com" }
        Action    = "sts:AssumeRole"
      }] : [],
    )
  })

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.oidc_provider_arn != null || var.create_instance_profile
      error_message = "Nothing could assume the brokers' role: set oidc_provider_arn (EKS, IRSA), create_instance_profile = true (EC2), or both."
    }
  }
}

# Least privilege on the archive prefix: list it, read, write and delete its
# objects, abort the multipart uploads the brokers started. Nothing outside
# the prefix, no bucket configuration.
resource "aws_iam_role_policy" "archive" {
  name = "sediment-archive"
  role = aws_iam_role.broker.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      # With a prefix, listing is allowed under it only; with "", the bucket.
      var.prefix == "" ? [] : [{
        Sid       = "ListArchivePrefix"
        Effect    = "Allow"
        Action    = "s3:ListBucket"
        Resource  = local.bucket_arn
        Condition = { StringLike = { "s3:prefix" = "${local.key_prefix}*" } }
      }],
      var.prefix != "" ? [] : [{
        Sid      = "ListArchiveBucket"
        Effect   = "Allow"
        Action   = "s3:ListBucket"
        Resource = local.bucket_arn
      }],
      [{
        Sid      = "ReadWriteArchiveObjects"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
        Resource = local.objects_arn
      }],
      var.kms_key_arn == null ? [] : [{
        Sid      = "UseArchiveKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = var.kms_key_arn
      }],
    )
  })
}

resource "aws_iam_instance_profile" "broker" {
  count = var.create_instance_profile ? 1 : 0
  name  = local.role_name
  role  = aws_iam_role.broker.name
  tags  = var.tags
}
