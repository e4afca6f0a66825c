/** Read secrets and parameters through the lambda-secrets-cache Lambda extension. */

export interface SecretOptions {
  versionStage?: string;
  versionId?: string;
  /** Read from AWS now (`refreshNow=true`). */
  refresh?: boolean;
  /** Read through another IAM role (`roleArn`). */
  roleArn?: string;
}

export interface ParameterOptions {
  /** Unset: the extension's default (not decrypted). */
  withDecryption?: boolean;
  version?: number;
  label?: string;
  refresh?: boolean;
  roleArn?: string;
}

/** The GetSecretValue answer, as the extension gives it (absent values are `null`). */
export interface SecretValue {
  ARN: string;
  Name: string;
  VersionId: string;
  SecretString: string | null;
  /** Base64. */
  SecretBinary: string | null;
  VersionStages: string[];
  CreatedDate: string | null;
  [key: string]: unknown;
}

/** The GetParameter answer. */
export interface ParameterValue {
  Parameter: {
    ARN: string;
    Name: string;
    Type: string;
    Value: string;
    Version: number;
    DataType?: string;
    LastModifiedDate?: string | null;
    Selector?: string | null;
    SourceResult?: string | null;
  };
  [key: string]: unknown;
}

export interface ClientOptions {
  /** Default: `PARAMETERS_SECRETS_EXTENSION_HTTP_PORT`, else 2773. */
  port?: number;
  /** Per read. Default 10 000. */
  timeoutMs?: number;
}

export class Client {
  constructor(options?: ClientOptions);
  getSecret(secretId: string, options?: SecretOptions): Promise<SecretValue>;
  getSecretString(secretId: string, options?: SecretOptions): Promise<string>;
  getSecretJson<T = unknown>(secretId: string, options?: SecretOptions): Promise<T>;
  getSecretBinary(secretId: string, options?: SecretOptions): Promise<Buffer>;
  getParameter(name: string, options?: ParameterOptions): Promise<ParameterValue>;
  getParameterValue(name: string, options?: ParameterOptions): Promise<string>;
  /** Closes the idle connections. */
  close(): void;
}

export function getSecret(secretId: string, options?: SecretOptions): Promise<SecretValue>;
export function getSecretString(secretId: string, options?: SecretOptions): Promise<string>;
export function getSecretJson<T = unknown>(secretId: string, options?: SecretOptions): Promise<T>;
export function getSecretBinary(secretId: string, options?: SecretOptions): Promise<Buffer>;
export function getParameter(name: string, options?: ParameterOptions): Promise<ParameterValue>;
export function getParameterValue(name: string, options?: ParameterOptions): Promise<string>;

/**
 * Installs providers built on the given `@aws-lambda-powertools/parameters/base` module as its
 * default `secrets` and `ssm` providers: `getSecret(...)` and `getParameter(...)` of Powertools
 * then read through the extension.
 */
export function usePowertools(
  base: { BaseProvider: abstract new (options: object) => object; DEFAULT_PROVIDERS: Record<string, unknown> },
  client?: Client,
): { secrets: object; ssm: object };

/** An error answer of the extension (`status`, `code` = its `__type`), or a failure to reach it (status 0). */
export class LambdaSecretsCacheError extends Error {
  readonly status: number;
  readonly code: string;
}
/** 400: malformed request, `TooManyRoles`, another 4xx from AWS. */
export class BadRequest extends LambdaSecretsCacheError {}
/** 403 `InvalidToken`, or no token variable set. */
export class TokenRejected extends LambdaSecretsCacheError {}
/** AWS refused (403, or an access-denied code). */
export class AccessDenied extends LambdaSecretsCacheError {}
/** No such secret, parameter or version. */
export class NotFound extends LambdaSecretsCacheError {}
/** 429: throttled with nothing cached, or too many connections. */
export class Throttled extends LambdaSecretsCacheError {}
/** 500/502/503: AWS unreachable or failing, `MissingRegion`, `MissingCredentials`. */
export class UpstreamUnavailable extends LambdaSecretsCacheError {}
/** 502 `InvalidUpstreamResponse`. */
export class UpstreamInvalid extends LambdaSecretsCacheError {}
/** 504 `TimeoutError`. */
export class UpstreamTimeout extends LambdaSecretsCacheError {}
/** 504 `ShuttingDown`. */
export class ShuttingDown extends LambdaSecretsCacheError {}
/** The extension could not be reached or did not answer its API. */
export class ExtensionUnavailable extends LambdaSecretsCacheError {}
/** The secret holds the other kind (string vs binary). */
export class NotAString extends LambdaSecretsCacheError {}

export const TOKEN_HEADER: 'X-Aws-Parameters-Secrets-Token';
