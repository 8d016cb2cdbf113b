variable "aws_region" {
  description = "AWS region of the buckets and of the EKS cluster that runs the jobs."
  type        = string
  default     = "us-east-1"
}

variable "name_prefix" {
  description = "Prefix of every bucket and role name (buckets are <prefix>-landing, <prefix>-lake, <prefix>-artifacts; bucket names are global, so make it unique, e.g. acme-visearch-prod)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,40}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-42 characters of lowercase letters, digits and hyphens."
  }
}

variable "eks_oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (IRSA), e.g. arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$", var.eks_oidc_provider_arn))
    error_message = "eks_oidc_provider_arn must be an IAM OIDC provider ARN."
  }
}

variable "k8s_namespace" {
  description = "Kubernetes namespace of the Airflow task pods, Spark drivers/executors and the serving tier."
  type        = string
  default     = "visearch"
}

variable "service_accounts" {
  description = "Kubernetes service account of each role (must match infra/k8s/base/serviceaccounts.yaml, the Airflow values and infra/k8s/airflow/airflow_local_settings.py)."
  type = object({
    etl     = string
    ml      = string
    index   = string
    serving = string
  })
  default = {
    etl     = "visearch-etl"
    ml      = "visearch-ml"
    index   = "visearch-index"
    serving = "visearch-serving"
  }
}

variable "landing_raw_retention_days" {
  description = "Days an upload manifest or click log stays in landing/ (manifests/, clicks/) before it expires; ingestion has copied it into bronze/silver by then. Landing images/ never expire: silver.images points at them."
  type        = number
  default     = 90

  validation {
    condition     = var.landing_raw_retention_days >= 31
    error_message = "landing_raw_retention_days must be at least 31 (raw logs move to STANDARD_IA at 30 days)."
  }
}

variable "index_build_ia_days" {
  description = "Days after which index build files (artifacts indexes/) move to STANDARD_IA; old builds are deleted by the publisher (keep_builds) and then expire as noncurrent versions."
  type        = number
  default     = 30

  validation {
    condition     = var.index_build_ia_days >= 30
    error_message = "S3 moves objects to STANDARD_IA no earlier than 30 days after creation."
  }
}

variable "noncurrent_version_days" {
  description = "Days a deleted or overwritten object version is kept (rollback window for the lake, models and index builds)."
  type        = number
  default     = 14
}

variable "abort_multipart_days" {
  description = "Days after which incomplete multipart uploads (killed jobs) are aborted."
  type        = number
  default     = 2
}

variable "kms_key_arn" {
  description = "KMS key for SSE-KMS on all three buckets; empty means SSE-S3 (AES256)."
  type        = string
  default     = ""
}

variable "force_destroy" {
  description = "Allow terraform destroy to delete non-empty buckets (keep false outside sandboxes)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}
