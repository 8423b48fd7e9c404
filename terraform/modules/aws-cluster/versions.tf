terraform {
  required_version = ">= 1.5.0"

  required_providers {
    # Checked offline against 3.39 only. The arguments used here are not
    # among those the 4.x, 5.x and 6.x upgrade guides remove.
    aws = {
      source  = "hashicorp/aws"
      version = ">= 3.39.0"
    }
  }
}
