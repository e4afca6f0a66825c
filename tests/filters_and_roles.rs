//! Prefetch by filter (`secrets: - filter: {...}`) and reads through other IAM roles
//! (`roleArn`), against moto through the counting proxy: the calls each costs, what is shared
//! and what never is.

mod common;

use std::time::Duration;

use common::*;
use lsc_devtools::fakes::platform::Options;
use lsc_devtools::fakes::proxy::Fault;
use serde_json::json;

const READER: &str = "arn:aws:iam::123456789012:role/reader";
const AUDITOR: &str = "arn:aws:iam::123456789012:role/team/auditor";
/// A role in another account: moto keeps one store per account, and credentials from this
/// role read that account's.
const FOREIGN: &str = "arn:aws:iam::210987654321:role/reader";

fn with_role(path: &str, role: &str) -> String {
    format!("{path}&roleArn={}", encode(role))
}

/// `n` secrets tagged `app=<tag>`, and one with another tag value: their names.
async fn tagged(tag: &str, n: usize) -> Vec<String> {
    let aws = aws();
    let mut names = Vec::new();
    for i in 0..=n {
        let name = unique(&format!("flt/{tag}/{i}"));
        let value = if i < n { tag } else { "other" };
        aws.call(
            "secretsmanager",
            "CreateSecret",
            json!({"Name": name, "SecretString": format!("{{\"n\":{i}}}"), "Tags": [{"Key": "app", "Value": value}]}),
        )
        .await
        .unwrap();
        if i < n {
            names.push(name);
        }
    }
    names
}

/// The access key id that signed each call of `op`, in order.
fn signing_keys(h: &Harness, op: &str) -> Vec<String> {
    h.proxy
        .signed_calls()
        .into_iter()
        .filter(|(o, _)| o == op)
        .map(|(_, key)| key)
        .collect()
}

async fn wait_prefetched(h: &Harness, entries: u64) {
    for _ in 0..500 {
        let status = status(&h.ext).await;
        if status["cache"]["entries"].as_u64() == Some(entries) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the prefetch did not install {entries} entries");
}

#[tokio::test]
async fn a_tag_filter_prefetches_every_match_in_pages_of_20() {
    let tag = unique("shop");
    let names = tagged(&tag, 45).await;
    let config = config_file(&format!("secrets:\n  - filter: {{tag-key: app, tag-value: {tag}}}\n"));
    let h = start(&[("SECRETS_CACHE_CONFIG", config.to_str().unwrap())]).await;
    wait_prefetched(&h, 45).await;
    assert_eq!(h.proxy.calls("BatchGetSecretValue"), 3, "⌈45/20⌉ pages: {:?}", h.proxy.counts());
    assert_eq!(h.proxy.total_calls(), 3);
    let status = status(&h.ext).await;
    let item = status_item(&status, &names[0]);
    assert_eq!(item["pinned"], true);
    let arn = item["arn"].as_str().unwrap().to_string();
    for path in [secret_path(&names[0]), secret_path(&names[44]), secret_path(&arn)] {
        let r = h.ext.get(&path).await.unwrap();
        assert_eq!((r.status, r.header("x-cache")), (200, Some("hit")), "{path}");
    }
    assert_eq!(h.proxy.total_calls(), 3, "every read was a hit");
}

#[tokio::test]
async fn a_filter_matching_nothing_fails_init_only_when_required() {
    let nothing = unique("no-such-tag");
    let yaml = format!("secrets:\n  - filter: {{tag-value: {nothing}}}\n    required: true\n");
    let mut lambda = spawn_lambda(Options::default(), Some(&yaml), &[]).await;
    let init = lambda.platform.wait_init(Duration::from_secs(20)).await.unwrap();
    assert_eq!(init.errors.len(), 1, "{:?}", init.errors);
    assert_eq!(init.errors[0].error_type, "Extension.PrefetchFailed");
    let message = init.errors[0].body["errorMessage"].as_str().unwrap();
    assert!(message.contains("NoSecretMatched") && message.contains(&nothing), "{message}");
    lambda.ext.wait_exit(Duration::from_secs(5)).await.unwrap().expect("exits");

    let yaml = format!("secrets:\n  - filter: {{tag-value: {nothing}}}\n");
    let lambda = start_lambda(Options::default(), Some(&yaml), &[]).await;
    let init = lambda.platform.wait_init(Duration::from_secs(20)).await.unwrap();
    assert!(init.errors.is_empty(), "{:?}", init.errors);
    lambda
        .ext
        .wait_log("the filter matched no secret", Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn two_roles_and_the_functions_own_never_share_an_entry() {
    let h = start(&[]).await;
    let id = unique("roles/db");
    h.aws.create_secret(&id, "{\"k\":1}").await.unwrap();
    let path = secret_path(&id);
    for p in [path.clone(), with_role(&path, READER), with_role(&path, AUDITOR)] {
        let first = h.ext.get(&p).await.unwrap();
        assert_eq!(
            (first.status, first.header("x-cache")),
            (200, Some("miss")),
            "{p}: {}",
            first.text()
        );
        let second = h.ext.get(&p).await.unwrap();
        assert_eq!(second.header("x-cache"), Some("hit"), "{p}");
    }
    assert_eq!(h.proxy.calls("GetSecretValue"), 3, "one per namespace: {:?}", h.proxy.counts());
    assert_eq!(h.proxy.calls("AssumeRole"), 2);
    // Each namespace's call was signed by its own credentials.
    let keys = signing_keys(&h, "GetSecretValue");
    assert_eq!(keys[0], "testing", "the function's own credentials");
    assert!(keys[1] != keys[0] && keys[2] != keys[0] && keys[1] != keys[2], "{keys:?}");
    let status = status(&h.ext).await;
    let roles: Vec<&str> = status["cache"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["id"] == id.as_str())
        .map(|i| i["role"].as_str().unwrap_or("own"))
        .collect();
    assert_eq!(roles.len(), 3, "{status}");
    assert!(
        roles.contains(&"own") && roles.contains(&READER) && roles.contains(&AUDITOR),
        "{roles:?}"
    );
    // Through a role in another account the id names nothing (that account has no such
    // secret): the value cached for the others is not served to it.
    let foreign = h.ext.get(&with_role(&path, FOREIGN)).await.unwrap();
    assert_eq!(foreign.status, 404, "{}", foreign.text());
    assert_eq!(foreign.json()["__type"], "ResourceNotFoundException");
}

#[tokio::test]
async fn role_credentials_are_assumed_once_and_reused() {
    let h = start(&[]).await;
    for i in 0..12 {
        let id = unique(&format!("reuse/{i}"));
        h.aws.create_secret(&id, "v").await.unwrap();
        let r = h.ext.get(&with_role(&secret_path(&id), READER)).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let name = unique("/reuse/p");
        h.aws.put_parameter(&name, "p", "String").await.unwrap();
        let r = h.ext.get(&with_role(&parameter_path(&name, ""), READER)).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(h.proxy.calls("AssumeRole"), 1, "{:?}", h.proxy.counts());
    assert_eq!((h.proxy.calls("GetSecretValue"), h.proxy.calls("GetParameter")), (12, 12));
}

#[tokio::test]
async fn role_limits_bad_arns_and_access_denied_are_clear_errors() {
    let h = start(&[("SECRETS_CACHE_MAX_ROLES", "2")]).await;
    let id = unique("limits/db");
    h.aws.create_secret(&id, "v").await.unwrap();
    let path = secret_path(&id);
    for role in [READER, AUDITOR] {
        assert_eq!(h.ext.get(&with_role(&path, role)).await.unwrap().status, 200);
    }
    let third = h.ext.get(&with_role(&path, "arn:aws:iam::123456789012:role/third")).await.unwrap();
    assert_eq!(third.status, 400, "{}", third.text());
    assert_eq!(third.json()["__type"], "TooManyRoles");
    // The roles in use still work.
    assert_eq!(h.ext.get(&with_role(&path, READER)).await.unwrap().header("x-cache"), Some("hit"));

    let bad = h.ext.get(&with_role(&path, "arn:aws:iam::123:role/x")).await.unwrap();
    assert_eq!(bad.status, 400);
    assert!(bad.json()["message"].as_str().unwrap().starts_with("roleArn"), "{}", bad.text());

    let h = start(&[]).await;
    h.proxy.inject(Fault::status(403, "AccessDenied").on("AssumeRole"));
    let denied = h.ext.get(&with_role(&secret_path(&id), READER)).await.unwrap();
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert_eq!(denied.json()["__type"], "AccessDenied");
    assert_eq!(h.proxy.calls("GetSecretValue"), 0, "nothing was read without the role");
}

/// A role AssumeRole has only refused holds no entries, so it takes no place from the next;
/// one that has read keeps its place.
#[tokio::test]
async fn a_role_only_refused_gives_its_place_to_the_next() {
    let h = start(&[("SECRETS_CACHE_MAX_ROLES", "1")]).await;
    let id = unique("refused/db");
    h.aws.create_secret(&id, "v").await.unwrap();
    let path = secret_path(&id);
    h.proxy.inject(Fault::status(403, "AccessDenied").on("AssumeRole").times(1));
    let denied = h.ext.get(&with_role(&path, AUDITOR)).await.unwrap();
    assert_eq!(denied.json()["__type"], "AccessDenied", "{}", denied.text());
    let next = h.ext.get(&with_role(&path, READER)).await.unwrap();
    assert_eq!(next.status, 200, "{}", next.text());
    let again = h.ext.get(&with_role(&path, AUDITOR)).await.unwrap();
    assert_eq!(again.json()["__type"], "TooManyRoles", "{}", again.text());
    assert_eq!(h.ext.get(&with_role(&path, READER)).await.unwrap().header("x-cache"), Some("hit"));
    assert_eq!((h.proxy.calls("AssumeRole"), h.proxy.calls("GetSecretValue")), (2, 1));
}

/// Issue 22, item 7: a role "only refused" whose read was already on its way (waiting for
/// an upstream place) must not lose its place to a new role and then read anyway: a role that
/// has read keeps its place, and the new one is refused.
#[tokio::test]
async fn a_role_whose_read_is_under_way_is_never_dropped_for_a_new_one() {
    let h = start(&[
        ("SECRETS_CACHE_MAX_ROLES", "1"),
        ("PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", "1"),
    ])
    .await;
    let ids: Vec<String> = (0..4).map(|i| unique(&format!("under-way/{i}"))).collect();
    for id in &ids {
        h.aws.create_secret(id, "v").await.unwrap();
    }
    h.proxy.inject(Fault::status(403, "AccessDenied").on("AssumeRole").times(1));
    let denied = h.ext.get(&with_role(&secret_path(&ids[0]), AUDITOR)).await.unwrap();
    assert_eq!(denied.json()["__type"], "AccessDenied", "{}", denied.text());
    // The function's own read holds the only upstream place.
    let (fault, held) = Fault::hold("GetSecretValue", false);
    h.proxy.inject(fault);
    let own = spawn_get(h.ext.addr, secret_path(&ids[1]));
    held.reached().await;
    let audited = spawn_get(h.ext.addr, with_role(&secret_path(&ids[2]), AUDITOR));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reader = h.ext.get(&with_role(&secret_path(&ids[3]), READER)).await.unwrap();
    held.open();
    let (own, audited) = (own.await.unwrap(), audited.await.unwrap());
    assert_eq!(own.status, 200);
    assert_eq!(audited.status, 200, "{}", audited.text());
    assert_eq!(reader.json()["__type"], "TooManyRoles", "{}", reader.text());
    // The role that read keeps its place and reads on.
    let again = h.ext.get(&with_role(&secret_path(&ids[3]), AUDITOR)).await.unwrap();
    assert_eq!(again.status, 200, "{}", again.text());
    let status = status(&h.ext).await;
    let roles: std::collections::BTreeSet<&str> = status["cache"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["role"].as_str())
        .collect();
    assert_eq!(roles, [AUDITOR].into_iter().collect(), "one role at SECRETS_CACHE_MAX_ROLES=1");
}

/// Issue 22, item 5: AssumeRole hanging for one role must not hold the upstream places the
/// function's own reads need.
#[tokio::test]
async fn a_hung_assume_role_never_stalls_another_identitys_reads() {
    let h = start(&[]).await;
    let own = unique("hung-sts/own");
    h.aws.create_secret(&own, "own-value").await.unwrap();
    let (fault, hung) = Fault::hold("AssumeRole", false);
    h.proxy.inject(fault);
    // Six items (six flights, more than PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS' 3).
    let mut through_role = Vec::new();
    for i in 0..6 {
        let theirs = unique(&format!("hung-sts/theirs-{i}"));
        h.aws.create_secret(&theirs, "v").await.unwrap();
        through_role.push(spawn_get(h.ext.addr, with_role(&secret_path(&theirs), READER)));
    }
    hung.reached().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let r = h.ext.get(&secret_path(&own)).await.unwrap();
    assert_eq!((r.status, r.header("x-cache")), (200, Some("miss")), "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(1), "waited {:?}", started.elapsed());
    hung.open();
    for read in through_role {
        assert_eq!(read.await.unwrap().status, 200);
    }
}

/// Issue 22, item 8: STS answering 5xx is retried with the same short back-offs as the other
/// services, so the reader gets STS's answer within its budget, not a time-out.
#[tokio::test]
async fn sts_failures_come_back_as_sts_answered_them_within_the_budget() {
    let h = start(&[
        ("SECRETS_MANAGER_TIMEOUT_MILLIS", "1000"),
        ("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", "1000"),
    ])
    .await;
    let id = unique("sts-503/db");
    h.aws.create_secret(&id, "v").await.unwrap();
    h.proxy.inject(Fault::status(503, "ServiceUnavailable").on("AssumeRole"));
    for role in [READER, AUDITOR, FOREIGN] {
        let r = h.ext.get(&with_role(&secret_path(&id), role)).await.unwrap();
        assert_eq!((r.status, r.json()["__type"].as_str()), (503, Some("ServiceUnavailable")), "{role}");
    }
    assert_eq!(h.proxy.calls("AssumeRole"), 9, "three attempts per role");
}

#[tokio::test]
async fn config_entries_read_through_their_role() {
    let id = unique("cfg-role/db");
    aws().create_secret(&id, "v").await.unwrap();
    let config = config_file(&format!("secrets:\n  - id: {id}\n    roleArn: {READER}\n"));
    let h = start(&[("SECRETS_CACHE_CONFIG", config.to_str().unwrap())]).await;
    wait_prefetched(&h, 1).await;
    assert_eq!(h.proxy.calls("AssumeRole"), 1);
    let through_role = h.ext.get(&with_role(&secret_path(&id), READER)).await.unwrap();
    assert_eq!(through_role.header("x-cache"), Some("hit"));
    // The function's own read of the same id is another namespace: a miss.
    let own = h.ext.get(&secret_path(&id)).await.unwrap();
    assert_eq!(own.header("x-cache"), Some("miss"));
}

/// Credentials close to their expiry (within 2.5–5 minutes: the SDK's lazy identity cache,
/// a 5-minute buffer with jitter) are assumed again at the next use; ones with an hour left
/// are kept (`role_credentials_are_assumed_once_and_reused`).
#[tokio::test]
async fn credentials_close_to_expiry_are_assumed_again() {
    use lsc_devtools::fakes::proxy::{Answer, FaultKind};
    let h = start(&[]).await;
    let expires = std::time::SystemTime::now() + Duration::from_secs(100);
    let xml = format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult><Credentials>\
         <AccessKeyId>ASIASHORTLIVED00001</AccessKeyId><SecretAccessKey>short</SecretAccessKey><SessionToken>short</SessionToken>\
         <Expiration>{}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROASHORT:s</AssumedRoleId>\
         <Arn>arn:aws:sts::123456789012:assumed-role/reader/s</Arn></AssumedRoleUser></AssumeRoleResult>\
         <ResponseMetadata><RequestId>short</RequestId></ResponseMetadata></AssumeRoleResponse>",
        lsc_devtools::fakes::platform::iso8601(expires)
    );
    let answer = Answer {
        status: 200,
        headers: vec![("content-type".into(), "text/xml".into())],
        body: xml.into(),
    };
    h.proxy.inject(Fault::always(FaultKind::Answer(answer)).on("AssumeRole").times(1));
    for i in 0..3 {
        let id = unique(&format!("expiry/{i}"));
        h.aws.create_secret(&id, "v").await.unwrap();
        let r = h.ext.get(&with_role(&secret_path(&id), READER)).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The scripted 100-second credentials were used once, then replaced by moto's (1 h),
    // which were kept for the third read.
    assert_eq!(h.proxy.calls("AssumeRole"), 2, "{:?}", h.proxy.counts());
    let keys = signing_keys(&h, "GetSecretValue");
    assert_eq!(keys[0], "ASIASHORTLIVED00001");
    assert!(keys[1] != keys[0] && keys[2] == keys[1], "{keys:?}");
}

/// Single-flight and stale-if-error hold through a role as for the function's own reads.
#[tokio::test]
async fn a_role_has_single_flight_and_stale_if_error() {
    let h = start(&[("SECRETS_MANAGER_TTL", "1")]).await;
    let id = unique("flight/db");
    h.aws.create_secret(&id, "v1").await.unwrap();
    let path = with_role(&secret_path(&id), READER);
    h.proxy
        .inject(Fault::always(lsc_devtools::fakes::proxy::FaultKind::Delay(Duration::from_millis(200))).on("GetSecretValue"));
    for r in concurrent_gets(h.ext.addr, &path, 16).await {
        assert_eq!((r.status, r.header("x-cache")), (200, Some("miss")), "{}", r.text());
    }
    assert_eq!(h.proxy.calls("GetSecretValue"), 1, "16 concurrent misses through a role, one call");
    assert_eq!(h.proxy.calls("AssumeRole"), 1);
    h.proxy.clear_faults();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.proxy.inject(Fault::status(503, "ServiceUnavailable").on("GetSecretValue"));
    let stale = h.ext.get(&path).await.unwrap();
    assert_eq!((stale.status, stale.header("x-cache")), (200, Some("stale")), "{}", stale.text());
}

/// An endpoint that answers every listing page with another token is called a bounded number
/// of times (4 × the pages the cache's capacity needs, plus one), not forever: for a filter
/// (20 per page) and for a parameter path (10 per page).
#[tokio::test]
async fn endless_listing_pages_are_bounded() {
    use lsc_devtools::fakes::proxy::{Answer, FaultKind};
    let config = config_file("secrets:\n  - filter: {tag-key: endless}\nparameters:\n  - path: /endless/\n");
    let secrets = Answer::json(200, r#"{"SecretValues":[],"Errors":[],"NextToken":"again"}"#);
    let parameters = Answer::json(200, r#"{"Parameters":[],"NextToken":"again"}"#);
    let h = start_with_faults(
        &[
            ("SECRETS_CACHE_CONFIG", config.to_str().unwrap()),
            ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "20"),
        ],
        vec![
            Fault::always(FaultKind::Answer(secrets)).on("BatchGetSecretValue"),
            Fault::always(FaultKind::Answer(parameters)).on("GetParametersByPath"),
        ],
    )
    .await;
    h.ext.wait_log("prefetch finished", Duration::from_secs(10)).await.unwrap();
    assert_eq!(h.proxy.calls("BatchGetSecretValue"), 5, "{:?}", h.proxy.counts());
    assert_eq!(h.proxy.calls("GetParametersByPath"), 9, "{:?}", h.proxy.counts());
    assert!(h.ext.logs().iter().any(|l| l.contains("kept what fits")));
    assert_eq!(h.ext.get("/ping").await.unwrap().status, 200);
}
