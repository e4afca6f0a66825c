//! IAM role ARNs, as `roleArn` on a request or a config entry names them:
//! `arn:<partition>:iam::<12-digit account>:role/<optional path/><name>`.

/// IAM allows 2 048 characters for a role ARN's path and name together; the ARN is a bit more.
pub const MAX_ROLE_ARN: usize = 2200;

/// Why `arn` is not an IAM role ARN; Ok when it is one.
pub fn check_role_arn(arn: &str) -> Result<(), &'static str> {
    if arn.len() > MAX_ROLE_ARN {
        return Err("is too long for an IAM role ARN");
    }
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)");
    };
    // aws, aws-cn, aws-us-gov, aws-iso-b, …: lowercase words joined by single hyphens.
    let words_ok = partition
        .split('-')
        .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()));
    if !partition.starts_with("aws") || !words_ok {
        return Err("has no valid partition (aws, aws-cn, aws-us-gov, …)");
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err("does not name a 12-digit account");
    }
    let Some(path_and_name) = resource.strip_prefix("role/") else {
        return Err("does not name a role (role/<name>)");
    };
    let name = path_and_name.rsplit('/').next().unwrap_or("");
    // The path in an ARN has no leading slash (`role/team/app/reader`).
    if name.is_empty() || name.len() > 64 || path_and_name.starts_with('/') || path_and_name.contains("//") {
        return Err("has no valid role name (1 to 64 characters after the last /)");
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b);
    if !path_and_name.bytes().all(allowed) {
        return Err("has characters a role name or path cannot have");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        for good in [
            "arn:aws:iam::123456789012:role/reader",
            "arn:aws:iam::123456789012:role/team/app/reader",
            "arn:aws-cn:iam::123456789012:role/a+b=c,d.e@f_g-h",
            "arn:aws-us-gov:iam::000000000000:role/x",
            "arn:aws-iso-b:iam::123456789012:role/x",
        ] {
            assert_eq!(check_role_arn(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "reader",
            "arn:aws:iam::123456789012:user/bob",
            "arn:aws:iam::1234:role/r",
            "arn:aws:iam:us-east-1:123456789012:role/r",
            "arn:aws:sts::123456789012:assumed-role/r/s",
            "arn:AWS:iam::123456789012:role/r",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/team/",
            "arn:aws:iam::123456789012:role/a//b",
            "arn:aws:iam::123456789012:role//reader",
            "arn:a-:iam::123456789012:role/r",
            "arn:-:iam::123456789012:role/r",
            "arn:aws--cn:iam::123456789012:role/r",
            "arn:cn:iam::123456789012:role/r",
            "arn:aws:iam::123456789012:role/bad name",
            "arn:aws:iam::123456789012:role/\u{1b}[31m",
        ] {
            assert!(check_role_arn(bad).is_err(), "{bad:?}");
        }
        let long = format!("arn:aws:iam::123456789012:role/{}", "a".repeat(65));
        assert!(check_role_arn(&long).is_err());
    }
}
