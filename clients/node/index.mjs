// ESM entry: the same module as index.cjs (one implementation, one default client).
import cache from './index.cjs';

export const {
  Client,
  getSecret,
  getSecretString,
  getSecretJson,
  getSecretBinary,
  getParameter,
  getParameterValue,
  usePowertools,
  LambdaSecretsCacheError,
  BadRequest,
  TokenRejected,
  AccessDenied,
  NotFound,
  Throttled,
  UpstreamUnavailable,
  UpstreamInvalid,
  UpstreamTimeout,
  ShuttingDown,
  ExtensionUnavailable,
  NotAString,
  TOKEN_HEADER,
} = cache;
export default cache;
