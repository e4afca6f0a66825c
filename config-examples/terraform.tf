# Terraform: publish both lambda-secrets-cache layers (arm64 and x86_64, from `make layer`),
# attach the one for the function's architecture, and configure it through the environment.

variable "architecture" {
  type        = string
  default     = "arm64"
  description = "The function's architecture; the layer of the same architecture is attached"
  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture is arm64 or x86_64."
  }
}

locals {
  # At most 15. Amazon Linux 2 (glibc 2.26) and Amazon Linux 2023 (2.34): the binary needs at
  # most GLIBC_2.26, so it starts on both. The list only filters the console; the layer works
  # on any runtime of the architecture (nodejs18.x included).
  secrets_cache_runtimes = [
    "provided.al2", "java8.al2", "java11", "java17", "python3.10", "python3.11",
    "provided.al2023", "python3.12", "python3.13", "python3.14", "nodejs20.x", "nodejs22.x",
    "nodejs24.x", "java21", "dotnet8",
  ]
}

# One layer per architecture: a layer's binary only runs on its own architecture.
resource "aws_lambda_layer_version" "secrets_cache" {
  for_each                 = toset(["arm64", "x86_64"])
  layer_name               = "lambda-secrets-cache-${each.key}"
  description              = "lambda-secrets-cache extension (${each.key}, glibc >= 2.26)"
  filename                 = "${path.module}/../target/lambda-secrets-cache-layer-${each.key}.zip"
  source_code_hash         = filebase64sha256("${path.module}/../target/lambda-secrets-cache-layer-${each.key}.zip")
  compatible_architectures = [each.key]
  compatible_runtimes      = local.secrets_cache_runtimes
}

resource "aws_lambda_function" "orders" {
  function_name = "orders"
  role          = aws_iam_role.orders.arn
  runtime       = "nodejs20.x"
  handler       = "index.handler"
  filename      = "build/orders.zip" # contains config.yaml at the root
  memory_size   = 256
  timeout       = 10
  architectures = [var.architecture]
  layers        = [aws_lambda_layer_version.secrets_cache[var.architecture].arn]

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
