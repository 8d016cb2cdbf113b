# Terraform / OpenTofu and provider versions for the visearch storage and IAM stack.

terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80.0, < 7.0.0"
    }
  }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge(var.tags, { "app" = "visearch", "managed-by" = "terraform" })
  }
}
