# Terraform: attach the lambda-secrets-cache layer and configure it through the environment.

variable "secrets_cache_layer_arn" {
  type        = string
  description = "ARN of the published lambda-secrets-cache layer version"
}

resource "aws_lambda_function" "orders" {
  function_name = "orders"
  role          = aws_iam_role.orders.arn
  runtime       = "nodejs20.x"
  handler       = "index.handler"
  filename      = "build/orders.zip" # contains config.yaml at the root
  memory_size   = 256
  timeout       = 10
  architectures = ["x86_64"]
  layers        = [var.secrets_cache_layer_arn]

  environment {
    variables = {
      PARAMETERS_SECRETS_EXTENSION_HTTP_PORT = "2773"
      SECRETS_MANAGER_TTL                    = "300"
      SSM_PARAMETER_STORE_TTL                = "300"
      SECRETS_CACHE_MAX_STALE                = "15m"
      SECRETS_CACHE_CONFIG                   = "/var/task/config.yaml"
      OTEL_EXPORTER_OTLP_ENDPOINT            = "http://localhost:4318"
      OTEL_SERVICE_NAME                      = "orders"
    }
  }
}

data "aws_iam_policy_document" "orders_secrets" {
  statement {
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue"]
    resources = ["arn:aws:secretsmanager:*:*:secret:prod/*"]
  }
  statement {
    actions   = ["secretsmanager:BatchGetSecretValue"]
    resources = ["*"]
  }
  statement {
    actions   = ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"]
    resources = ["arn:aws:ssm:*:*:parameter/prod/*"]
  }
}

resource "aws_iam_role" "orders" {
  name = "orders"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "lambda.amazonaws.com" } }]
  })
}

resource "aws_iam_role_policy" "orders_secrets" {
  role   = aws_iam_role.orders.id
  policy = data.aws_iam_policy_document.orders_secrets.json
}
