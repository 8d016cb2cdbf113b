# The three storage roots of visearch (DESIGN.md "Local and real"):
#   VISEARCH_LANDING   = s3://<prefix>-landing    uploads (images/, manifests/, clicks/, judgments/, labels/)
#   VISEARCH_LAKE      = s3://<prefix>-lake       Delta tables (bronze/, silver/, gold/)
#   VISEARCH_ARTIFACTS = s3://<prefix>-artifacts  models/ and indexes/ (what the serving tier reads)
# Every bucket: versioned, private (public access blocked, ACLs disabled), encrypted at rest,
# TLS-only, with lifecycle rules that bound what old data costs.

locals {
  buckets = {
    landing   = "${var.name_prefix}-landing"
    lake      = "${var.name_prefix}-lake"
    artifacts = "${var.name_prefix}-artifacts"
  }
  use_kms = var.kms_key_arn != ""
}

resource "aws_s3_bucket" "this" {
  for_each = local.buckets

  bucket        = each.value
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = aws_s3_bucket.this

  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# Versioning is the safety net under every overwrite and delete: a killed job or a bad publish can
# be rolled back within var.noncurrent_version_days; lifecycle rules below expire the old versions.
resource "aws_s3_bucket_versioning" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.use_kms ? "aws:kms" : "AES256"
      kms_master_key_id = local.use_kms ? var.kms_key_arn : null
    }
    bucket_key_enabled = local.use_kms
  }
}

data "aws_iam_policy_document" "tls_only" {
  for_each = aws_s3_bucket.this

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      each.value.arn,
      "${each.value.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "tls_only" {
  for_each = aws_s3_bucket.this

  bucket     = each.value.id
  policy     = data.aws_iam_policy_document.tls_only[each.key].json
  depends_on = [aws_s3_bucket_public_access_block.this]
}

# landing/: raw manifests and click logs expire once ingested (bronze/silver hold them); images/
# never expire (silver.images points at them) but move to Intelligent-Tiering.
resource "aws_s3_bucket_lifecycle_configuration" "landing" {
  bucket     = aws_s3_bucket.this["landing"].id
  depends_on = [aws_s3_bucket_versioning.this]

  rule {
    id     = "raw-manifests-expire"
    status = "Enabled"
    filter {
      prefix = "manifests/"
    }
    transition {
      days          = 30
      storage_class = "STANDARD_IA"
    }
    expiration {
      days = var.landing_raw_retention_days
    }
  }

  rule {
    id     = "raw-clicks-expire"
    status = "Enabled"
    filter {
      prefix = "clicks/"
    }
    transition {
      days          = 30
      storage_class = "STANDARD_IA"
    }
    expiration {
      days = var.landing_raw_retention_days
    }
  }

  rule {
    id     = "images-tiering"
    status = "Enabled"
    filter {
      prefix = "images/"
    }
    transition {
      days          = 30
      storage_class = "INTELLIGENT_TIERING"
    }
  }

  rule {
    id     = "noncurrent-and-incomplete"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_multipart_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }
}

# lake/: Delta tables manage their own files (VACUUM deletes unreferenced ones); versioning keeps
# those deletes recoverable for a while, then they expire.
resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket     = aws_s3_bucket.this["lake"].id
  depends_on = [aws_s3_bucket_versioning.this]

  rule {
    id     = "noncurrent-and-incomplete"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_multipart_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }
}

# artifacts/: index builds age into STANDARD_IA. The live build is never expired by age (a quiet
# week must not delete what CURRENT points at): the publisher deletes builds beyond keep_builds, and
# those deletions become noncurrent versions that expire after var.noncurrent_version_days.
resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket     = aws_s3_bucket.this["artifacts"].id
  depends_on = [aws_s3_bucket_versioning.this]

  rule {
    id     = "index-builds-to-ia"
    status = "Enabled"
    filter {
      prefix = "indexes/"
    }
    transition {
      days          = var.index_build_ia_days
      storage_class = "STANDARD_IA"
    }
  }

  rule {
    id     = "noncurrent-and-incomplete"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_multipart_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }
}
