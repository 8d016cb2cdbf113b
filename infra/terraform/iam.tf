# Least-privilege IAM roles, one per kind of work, each assumable only by its Kubernetes service
# account through IRSA (sts:AssumeRoleWithWebIdentity on the cluster's OIDC provider).
#
#   role     service account    jobs                                          S3 access
#   etl      visearch-etl       ingest_*, online_metrics, quality_gate,       read landing; read/write lake
#                               build_pairs
#   ml       visearch-ml        train, evaluate, promote, embed               read landing images/ judgments/;
#                                                                             read lake, write lake gold/;
#                                                                             read/write artifacts models/
#   index    visearch-index     build_index, publish_index                    read lake gold/ silver/;
#                                                                             read/write artifacts indexes/;
#                                                                             read artifacts models/
#   serving  visearch-serving   the Searcher (serving tier)                   READ-ONLY artifacts indexes/, models/
#
# Writers get s3:AbortMultipartUpload so that S3A can clean up the upload of a killed task.
# The same mapping of jobs to service accounts lives in infra/k8s/airflow/airflow_local_settings.py
# (Airflow path) and in the SparkApplication manifests (spark-operator path); tests/infra checks
# that the three agree. A Spark job's executors run as "<service account>-executor" (same role, no
# Kubernetes RBAC, see infra/k8s/base/serviceaccounts.yaml), so the job roles trust both subjects.

locals {
  oidc_host = element(split("oidc-provider/", var.eks_oidc_provider_arn), 1)

  roles = {
    etl     = { service_account = var.service_accounts.etl, subjects = [var.service_accounts.etl, "${var.service_accounts.etl}-executor"], description = "visearch ingestion/ETL: reads landing, writes the lake" }
    ml      = { service_account = var.service_accounts.ml, subjects = [var.service_accounts.ml, "${var.service_accounts.ml}-executor"], description = "visearch training/embedding: reads lake, writes lake gold/ and artifacts models/" }
    index   = { service_account = var.service_accounts.index, subjects = [var.service_accounts.index, "${var.service_accounts.index}-executor"], description = "visearch index build/publish: reads lake gold/ silver/, writes artifacts indexes/" }
    serving = { service_account = var.service_accounts.serving, subjects = [var.service_accounts.serving], description = "visearch serving tier: read-only artifacts indexes/ and models/" }
  }

  landing_arn   = aws_s3_bucket.this["landing"].arn
  lake_arn      = aws_s3_bucket.this["lake"].arn
  artifacts_arn = aws_s3_bucket.this["artifacts"].arn
}

data "aws_iam_policy_document" "assume" {
  for_each = local.roles

  statement {
    sid     = "IrsaWebIdentity"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.eks_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = [for sa in each.value.subjects : "system:serviceaccount:${var.k8s_namespace}:${sa}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  for_each = local.roles

  name                 = "${var.name_prefix}-${each.key}"
  description          = each.value.description
  assume_role_policy   = data.aws_iam_policy_document.assume[each.key].json
  max_session_duration = 43200
}

# --- etl: ingest_images, ingest_interactions, online_metrics, quality_gate, build_pairs ----------
data "aws_iam_policy_document" "etl" {
  statement {
    sid       = "ListLandingAndLake"
    actions   = ["s3:ListBucket"]
    resources = [local.landing_arn, local.lake_arn]
  }
  statement {
    sid       = "ReadLanding"
    actions   = ["s3:GetObject"]
    resources = ["${local.landing_arn}/*"]
  }
  statement {
    sid       = "ReadWriteLake"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${local.lake_arn}/*"]
  }
}

# --- ml: train, evaluate, promote, embed -------------------------------------------------------
data "aws_iam_policy_document" "ml" {
  statement {
    sid       = "ListLandingInputs"
    actions   = ["s3:ListBucket"]
    resources = [local.landing_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["images/*", "judgments/*"]
    }
  }
  statement {
    sid       = "ReadLandingInputs"
    actions   = ["s3:GetObject"]
    resources = ["${local.landing_arn}/images/*", "${local.landing_arn}/judgments/*"]
  }
  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket"]
    resources = [local.lake_arn]
  }
  statement {
    sid       = "ReadLake"
    actions   = ["s3:GetObject"]
    resources = ["${local.lake_arn}/*"]
  }
  statement {
    sid       = "WriteLakeGold"
    actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${local.lake_arn}/gold/*"]
  }
  statement {
    sid       = "ListModels"
    actions   = ["s3:ListBucket"]
    resources = [local.artifacts_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["models/*"]
    }
  }
  statement {
    sid       = "ReadWriteModels"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${local.artifacts_arn}/models/*"]
  }
}

# --- index: build_index, publish_index -------------------------------------------------------------
data "aws_iam_policy_document" "index" {
  statement {
    sid       = "ListLakeGoldSilver"
    actions   = ["s3:ListBucket"]
    resources = [local.lake_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["gold/*", "silver/*"]
    }
  }
  statement {
    sid       = "ReadLakeGoldSilver"
    actions   = ["s3:GetObject"]
    resources = ["${local.lake_arn}/gold/*", "${local.lake_arn}/silver/*"]
  }
  statement {
    sid       = "ListIndexesAndModels"
    actions   = ["s3:ListBucket"]
    resources = [local.artifacts_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["indexes/*", "models/*"]
    }
  }
  statement {
    sid       = "ReadWriteIndexes"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${local.artifacts_arn}/indexes/*"]
  }
  statement {
    sid       = "ReadModels"
    actions   = ["s3:GetObject"]
    resources = ["${local.artifacts_arn}/models/*"]
  }
}

# --- serving: the Searcher; read-only, and only the published artifacts ----------------------------
data "aws_iam_policy_document" "serving" {
  statement {
    sid       = "ListIndexesAndModels"
    actions   = ["s3:ListBucket"]
    resources = [local.artifacts_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["indexes/*", "models/*"]
    }
  }
  statement {
    sid       = "ReadIndexesAndModels"
    actions   = ["s3:GetObject"]
    resources = ["${local.artifacts_arn}/indexes/*", "${local.artifacts_arn}/models/*"]
  }
}

locals {
  s3_policies = {
    etl     = data.aws_iam_policy_document.etl.json
    ml      = data.aws_iam_policy_document.ml.json
    index   = data.aws_iam_policy_document.index.json
    serving = data.aws_iam_policy_document.serving.json
  }
}

resource "aws_iam_role_policy" "s3" {
  for_each = local.roles

  name   = "s3-access"
  role   = aws_iam_role.this[each.key].id
  policy = local.s3_policies[each.key]
}

# SSE-KMS only: writers encrypt (GenerateDataKey) and decrypt; the serving tier only decrypts.
data "aws_iam_policy_document" "kms" {
  for_each = local.use_kms ? local.roles : {}

  statement {
    sid       = "UseBucketKey"
    actions   = each.key == "serving" ? ["kms:Decrypt"] : ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "kms" {
  for_each = local.use_kms ? local.roles : {}

  name   = "kms-access"
  role   = aws_iam_role.this[each.key].id
  policy = data.aws_iam_policy_document.kms[each.key].json
}
