terraform {
  required_version = ">= 1.5.0"

  required_providers {
    # 3.39 is the oldest version this module is checked against (the S3
    # settings are the inline blocks of aws_s3_bucket). Provider 4.0 to 4.8
    # made those blocks read-only: use 3.39+, or 4.9+ (5.x and 6.x accept them
    # with a deprecation warning).
    aws = {
      source  = "hashicorp/aws"
      version = ">= 3.39.0"
    }
  }
}
