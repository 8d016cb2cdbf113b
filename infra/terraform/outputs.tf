output "bucket_names" {
  description = "Bucket of each storage root."
  value       = { for k, b in aws_s3_bucket.this : k => b.bucket }
}

output "visearch_env" {
  description = "The storage roots as the jobs read them (environment of Airflow, Spark and serving pods)."
  value = {
    VISEARCH_LANDING   = "s3://${aws_s3_bucket.this["landing"].bucket}"
    VISEARCH_LAKE      = "s3://${aws_s3_bucket.this["lake"].bucket}"
    VISEARCH_ARTIFACTS = "s3://${aws_s3_bucket.this["artifacts"].bucket}"
    VISEARCH_S3_REGION = var.aws_region
  }
}

output "role_arns" {
  description = "IRSA role of each service account: the eks.amazonaws.com/role-arn annotation value."
  value       = { for k, r in aws_iam_role.this : local.roles[k].service_account => r.arn }
}
