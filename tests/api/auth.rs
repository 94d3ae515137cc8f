//! OIDC: exactly the tokens Google mints for this subscription's service account and audience
//! get through; everything else is 401 (bad token) or 403 (genuine token, wrong party).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::front_end::FrontEnd;
use crate::support::oidc::{AUDIENCE, JwksServer, PUSHER, TestKey, google_claims, now};
use crate::support::*;

async fn spawn_oidc_app(jwks: &JwksServer) -> TestApp {
    spawn_oidc_app_with(jwks, &[]).await
}

/// An app that verifies tokens from `jwks` for the test audience and pusher, with more flags.
pub async fn spawn_oidc_app_with(jwks: &JwksServer, extra: &[&str]) -> TestApp {
    let mut args = vec![
        "--auth",
        "oidc",
        "--oidc-audience",
        AUDIENCE,
        "--oidc-allowed-email",
        PUSHER,
        "--oidc-jwks-url",
        &jwks.url,
    ];
    args.extend_from_slice(extra);
    spawn_app_with(&args).await
}

async fn push_with(app: &TestApp, authorization: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/push", app.address))
        .body(fixture("order.json"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

fn claims_with(changes: Value) -> Value {
    let mut claims = google_claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn b64(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn a_token_from_the_allowed_service_account_is_accepted() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(vec![key.jwk.clone()], true).await;
    let app = spawn_oidc_app(&jwks).await;
    app.wait_until_ready().await;

    let token = key.sign(&google_claims());
    let ack = json_body(
        push_with(&app, Some(&format!("Bearer {token}"))).await,
        "/push",
        200,
    )
    .await;

    assert_eq!(ack["outcome"], "landed");
    assert_eq!(app.count("order"), 1);
    // The issuer without scheme is Google's too.
    let other = key.sign(&claims_with(
        json!({"iss": "accounts.google.com", "iat": now() - 5}),
    ));
    json_body(
        push_with(&app, Some(&format!("Bearer {other}"))).await,
        "/push",
        200,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_with_the_right_status() {
    let key = TestKey::generate("k1");
    let stranger = TestKey::generate("k1");
    let jwks = JwksServer::start(vec![key.jwk.clone()], true).await;
    let app = spawn_oidc_app(&jwks).await;
    app.wait_until_ready().await;

    let good = key.sign(&google_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let none_header = json!({"alg": "none", "typ": "JWT", "kid": "k1"});
    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some("k1".into());
    let mut no_kid = Header::new(Algorithm::RS256);
    no_kid.kid = None;
    let mut unknown_kid = Header::new(Algorithm::RS256);
    unknown_kid.kid = Some("k9".into());
    let evil_claims =
        claims_with(json!({"email": "attacker@evil-project.iam.gserviceaccount.com"}));
    // The first character, not the last: the last one's low bits are padding, and changing
    // them can make the base64 non-canonical instead of the signature wrong.
    let flipped = {
        let mut signature = parts[2].to_string();
        let first = if signature.starts_with('A') { "B" } else { "A" };
        signature.replace_range(..1, first);
        signature
    };

    let bearer = |t: String| Some(format!("Bearer {t}"));
    let cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("no header", None, 401, "missing Authorization header"),
        (
            "wrong scheme",
            Some(format!("Basic {}", parts[1])),
            401,
            "scheme must be Bearer",
        ),
        (
            "empty bearer",
            Some("Bearer ".into()),
            401,
            "bearer token is empty",
        ),
        (
            "garbage",
            bearer("garbage".into()),
            401,
            "not a well-formed JWT",
        ),
        (
            "expired",
            bearer(key.sign(&claims_with(
                json!({"iat": now() - 7200, "exp": now() - 3600}),
            ))),
            401,
            "expired",
        ),
        (
            "not yet valid",
            bearer(key.sign(&claims_with(json!({"nbf": now() + 3600})))),
            401,
            "not valid yet",
        ),
        (
            "issued in the future",
            bearer(key.sign(&claims_with(json!({"iat": now() + 3600})))),
            401,
            "iat is in the future",
        ),
        (
            "no iat",
            bearer(key.sign(&claims_with(json!({"iat": null})))),
            401,
            "no iat",
        ),
        (
            "no exp",
            bearer(key.sign(&claims_with(json!({"exp": null})))),
            401,
            "no exp",
        ),
        (
            "exp before 1970",
            bearer(key.sign(&claims_with(json!({"exp": -1})))),
            401,
            "token has expired",
        ),
        (
            "alg none",
            bearer(format!("{}.{}.", b64(&none_header), parts[1])),
            401,
            "not a well-formed JWT",
        ),
        (
            "HS256 with the public key as secret",
            bearer(
                jsonwebtoken::encode(
                    &hs256,
                    &google_claims(),
                    &EncodingKey::from_secret(key.public_pem.as_bytes()),
                )
                .unwrap(),
            ),
            401,
            "must be RS256",
        ),
        (
            "missing kid",
            bearer(key.sign_with(no_kid, &google_claims())),
            401,
            "no kid",
        ),
        (
            "unknown kid",
            bearer(key.sign_with(unknown_kid, &google_claims())),
            401,
            "unknown key",
        ),
        (
            "signed by another key with the same kid",
            bearer(stranger.sign(&google_claims())),
            401,
            "signature does not verify",
        ),
        (
            "tampered payload",
            bearer(format!("{}.{}.{}", parts[0], b64(&evil_claims), parts[2])),
            401,
            "signature does not verify",
        ),
        (
            "tampered signature",
            bearer(format!("{}.{}.{flipped}", parts[0], parts[1])),
            401,
            "signature does not verify",
        ),
        (
            "wrong audience",
            bearer(key.sign(&claims_with(
                json!({"aud": "https://elsewhere.example/push"}),
            ))),
            403,
            "audience",
        ),
        (
            "another project's audience, right email",
            bearer(key.sign(&claims_with(
                json!({"aud": "https://landfall-other-project.a.run.app/push"}),
            ))),
            403,
            "audience",
        ),
        (
            "wrong issuer",
            bearer(key.sign(&claims_with(json!({"iss": "https://evil.example"})))),
            403,
            "issuer",
        ),
        (
            "email not allowed",
            bearer(key.sign(&evil_claims)),
            403,
            "is not allowed to push here",
        ),
        (
            "email missing",
            bearer(key.sign(&claims_with(json!({"email": null})))),
            403,
            "no email",
        ),
        (
            "email not verified",
            bearer(key.sign(&claims_with(json!({"email_verified": false})))),
            403,
            "not verified",
        ),
        (
            "email_verified missing",
            bearer(key.sign(&claims_with(json!({"email_verified": null})))),
            403,
            "not verified",
        ),
        (
            "email_verified as a string",
            bearer(key.sign(&claims_with(json!({"email_verified": "true"})))),
            403,
            "not verified",
        ),
    ];
    for (case, authorization, status, message) in cases {
        let response = push_with(&app, authorization.as_deref()).await;
        if status == 401 {
            assert_eq!(
                response
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap()),
                Some("Bearer error=\"invalid_token\""),
                "{case}"
            );
        }
        let body = json_body(response, "/push", status).await;
        let expected_code = if status == 401 {
            "unauthenticated"
        } else {
            "forbidden"
        };
        assert_eq!(body["error"], expected_code, "{case}");
        assert!(
            body["message"].as_str().unwrap().contains(message),
            "{case}: {body}"
        );
    }
    assert!(app.landed_objects().is_empty(), "nothing refused may land");
    app.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_without_a_restart_but_unknown_kids_cannot_hammer_the_jwks() {
    let old = TestKey::generate("old");
    let new = TestKey::generate("new");
    let jwks = JwksServer::start(vec![old.jwk.clone()], true).await;
    let app = spawn_oidc_app(&jwks).await;
    app.wait_until_ready().await;

    jwks.set_keys(vec![old.jwk.clone(), new.jwk.clone()]);
    let rotated = new.sign(&google_claims());
    json_body(
        push_with(&app, Some(&format!("Bearer {rotated}"))).await,
        "/push",
        200,
    )
    .await;

    let hits = jwks.hits();
    for i in 0..20 {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(format!("made-up-{i}"));
        let token = new.sign_with(header, &google_claims());
        json_body(
            push_with(&app, Some(&format!("Bearer {token}"))).await,
            "/push",
            401,
        )
        .await;
    }
    assert_eq!(
        jwks.hits(),
        hits,
        "unknown kids within 30 s of a refetch must not refetch"
    );
    app.stop().await;
}

#[tokio::test]
async fn cached_keys_keep_working_when_the_jwks_server_goes_down() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(vec![key.jwk.clone()], true).await;
    let app = spawn_oidc_app(&jwks).await;
    app.wait_until_ready().await;

    jwks.set_up(false);
    let token = key.sign(&claims_with(json!({"iat": now() - 1})));

    let ack = json_body(
        push_with(&app, Some(&format!("Bearer {token}"))).await,
        "/push",
        200,
    )
    .await;
    assert_eq!(ack["outcome"], "landed", "{ack}");
    assert_eq!(app.count("order"), 1);
    let ready = json_body(app.get("/readyz").await, "/readyz", 200).await;
    let auth = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "auth")
        .unwrap()
        .clone();
    assert_eq!(
        auth,
        json!({"name": "auth", "ok": true}),
        "the cached keys still count"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_jwks_server_down_at_start_means_503_not_401_until_it_comes_back() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(vec![key.jwk.clone()], false).await;
    let app = spawn_oidc_app(&jwks).await;
    let token = key.sign(&google_claims());

    let not_ready = json_body(app.get("/readyz").await, "/readyz", 503).await;
    let auth = not_ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "auth")
        .unwrap()
        .clone();
    assert_eq!(auth["ok"], false);
    let refused = json_body(
        push_with(&app, Some(&format!("Bearer {token}"))).await,
        "/push",
        503,
    )
    .await;
    assert_eq!(refused["error"], "auth_unavailable");

    jwks.set_up(true);
    app.wait_until_ready().await;
    let ack = json_body(
        push_with(&app, Some(&format!("Bearer {token}"))).await,
        "/push",
        200,
    )
    .await;
    assert_eq!(
        (ack["outcome"].as_str(), ack["duplicate"].as_bool()),
        (Some("landed"), Some(false))
    );
    assert_eq!(app.count("order"), 1);
    app.stop().await;
}

/// A token as Cloud Run forwards it once its IAM check has verified the signature.
fn stripped(token: &str) -> String {
    let (signed, _) = token.rsplit_once('.').unwrap();
    format!("{signed}.SIGNATURE_REMOVED_BY_GOOGLE")
}

#[tokio::test]
async fn behind_cloud_run_iam_the_claims_of_the_verified_token_are_checked() {
    let key = TestKey::generate("k1");
    let app = spawn_app_with(&[
        "--auth",
        "cloud-run",
        "--oidc-audience",
        AUDIENCE,
        "--oidc-allowed-email",
        PUSHER,
    ])
    .await;
    // No keys are needed: Cloud Run checked the signature.
    app.wait_until_ready().await;
    let send = |headers: Vec<(&'static str, String)>| {
        let mut request = app
            .client
            .post(format!("{}/push", app.address))
            .body(fixture("order.json"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let bearer = |claims: &Value| format!("Bearer {}", stripped(&key.sign(claims)));
    let stranger = claims_with(json!({"email": "attacker@evil-project.iam.gserviceaccount.com"}));

    let ok = send(vec![("authorization", bearer(&google_claims()))])
        .await
        .unwrap();
    assert_eq!(json_body(ok, "/push", 200).await["outcome"], "landed");

    let cases = [
        (
            "another account",
            vec![("authorization", bearer(&stranger))],
            403,
            "is not allowed to push here",
        ),
        (
            "another audience",
            vec![(
                "authorization",
                bearer(&claims_with(json!({"aud": "https://elsewhere.example"}))),
            )],
            403,
            "audience",
        ),
        (
            "expired",
            vec![(
                "authorization",
                bearer(&claims_with(
                    json!({"iat": now() - 7200, "exp": now() - 3600}),
                )),
            )],
            401,
            "expired",
        ),
        (
            "no issuer",
            vec![("authorization", bearer(&claims_with(json!({"iss": null}))))],
            403,
            "no issuer",
        ),
        (
            "a signature Cloud Run did not remove",
            vec![(
                "authorization",
                format!("Bearer {}", key.sign(&google_claims())),
            )],
            401,
            "not verified by Cloud Run",
        ),
        (
            // Cloud Run verifies X-Serverless-Authorization when present and passes
            // Authorization through untouched: only the former may be trusted.
            "a forged Authorization beside a verified X-Serverless-Authorization",
            vec![
                ("x-serverless-authorization", bearer(&stranger)),
                ("authorization", bearer(&google_claims())),
            ],
            403,
            "is not allowed to push here",
        ),
    ];
    for (case, headers, status, message) in cases {
        let body = json_body(send(headers).await.unwrap(), "/push", status).await;
        assert!(
            body["message"].as_str().unwrap().contains(message),
            "{case}: {body}"
        );
    }
    assert_eq!(app.count("order"), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_token_stripped_by_cloud_run_is_refused_with_a_hint_when_landfall_checks_signatures() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(vec![key.jwk.clone()], true).await;
    let app = spawn_oidc_app(&jwks).await;
    app.wait_until_ready().await;

    let response = push_with(
        &app,
        Some(&format!("Bearer {}", stripped(&key.sign(&google_claims())))),
    )
    .await;

    let body = json_body(response, "/push", 401).await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("--auth cloud-run"),
        "{body}"
    );
    app.stop().await;
}

/// landfall behind the stand-in front end, with `--auth cloud-run` probing its public URL.
async fn behind_front_end(open: bool) -> (TestApp, FrontEnd) {
    let front = FrontEnd::start(open).await;
    let app = spawn_app_with(&[
        "--auth",
        "cloud-run",
        "--oidc-audience",
        AUDIENCE,
        "--oidc-allowed-email",
        PUSHER,
        "--cloud-run-probe-url",
        &front.url,
    ])
    .await;
    front.route_to(&app.address);
    (app, front)
}

#[tokio::test]
async fn behind_a_front_end_that_refuses_unauthenticated_calls_cloud_run_auth_is_ready() {
    let (app, front) = behind_front_end(false).await;
    let key = TestKey::generate("k1");

    let ready = json_body(app.get("/readyz").await, "/readyz", 200).await;
    let check = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "unauthenticated_calls")
        .unwrap();
    assert_eq!(check["ok"], true, "{ready}");
    // A push through the front end, with the token it verified and stripped, lands.
    let response = app
        .client
        .post(format!("{}/push", front.url))
        .header(
            "authorization",
            format!("Bearer {}", key.sign(&google_claims())),
        )
        .body(fixture("order.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body(response, "/push", 200).await["outcome"], "landed");
    app.stop().await;
}

#[tokio::test]
async fn a_cloud_run_service_that_lets_unauthenticated_calls_through_is_not_ready() {
    let (app, _front) = behind_front_end(true).await;

    let ready = json_body(app.get("/readyz").await, "/readyz", 503).await;
    let check = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "unauthenticated_calls")
        .unwrap();
    assert_eq!(check["ok"], false, "{ready}");
    let error = check["error"].as_str().unwrap();
    assert!(error.contains("allows unauthenticated calls"), "{error}");
    assert!(error.contains("--no-allow-unauthenticated"), "{error}");
    app.stop().await;
}

#[tokio::test]
async fn a_front_end_with_no_revision_serving_yet_proves_nothing_and_blocks_nothing() {
    let front = FrontEnd::start(true).await;
    let app = spawn_app_with(&[
        "--auth",
        "cloud-run",
        "--oidc-audience",
        AUDIENCE,
        "--oidc-allowed-email",
        PUSHER,
        "--cloud-run-probe-url",
        &front.url,
    ])
    .await;
    // The front end answers 503 (nothing routed): no verdict, readiness stands.
    json_body(app.get("/readyz").await, "/readyz", 200).await;
    app.stop().await;
}

#[tokio::test]
async fn under_load_a_new_key_is_fetched_once_and_a_removed_key_stops_working() {
    let (old, new) = (TestKey::generate("old"), TestKey::generate("new"));
    let jwks = JwksServer::start(vec![old.jwk.clone()], true).await;
    let app = spawn_oidc_app(&jwks).await;
    app.wait_until_ready().await;
    let by_old = format!("Bearer {}", old.sign(&google_claims()));
    json_body(push_with(&app, Some(&by_old)).await, "/push", 200).await;

    // The set rotates: the new key in, the old one out.
    jwks.set_keys(vec![new.jwk.clone()]);
    let hits = jwks.hits();
    let by_new = format!("Bearer {}", new.sign(&google_claims()));
    let pushes = (0..50).map(|_| push_with(&app, Some(&by_new)));
    let statuses: Vec<u16> = futures::future::join_all(pushes)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();

    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        jwks.hits(),
        hits + 1,
        "fifty pushes with an unknown key: one fetch"
    );
    let removed = json_body(push_with(&app, Some(&by_old)).await, "/push", 401).await;
    assert_eq!(
        removed["message"],
        "token is signed with an unknown key (kid)"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_leeway_bounds_how_stale_a_token_may_be() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(vec![key.jwk.clone()], true).await;
    let just_expired = format!(
        "Bearer {}",
        key.sign(&claims_with(
            json!({"iat": now() - 3630, "exp": now() - 30})
        ))
    );
    let lenient = spawn_oidc_app_with(&jwks, &["--oidc-leeway", "60"]).await;
    lenient.wait_until_ready().await;
    json_body(push_with(&lenient, Some(&just_expired)).await, "/push", 200).await;
    lenient.stop().await;

    let strict = spawn_oidc_app_with(&jwks, &["--oidc-leeway", "5"]).await;
    strict.wait_until_ready().await;
    let refused = json_body(push_with(&strict, Some(&just_expired)).await, "/push", 401).await;
    assert_eq!(refused["message"], "token has expired");
    strict.stop().await;
}

#[tokio::test]
async fn an_explicit_issuer_is_the_only_one_accepted() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(vec![key.jwk.clone()], true).await;
    let app = spawn_oidc_app_with(&jwks, &["--oidc-issuer", "https://accounts.google.com"]).await;
    app.wait_until_ready().await;
    let with_issuer = |iss: &str| format!("Bearer {}", key.sign(&claims_with(json!({"iss": iss}))));

    json_body(
        push_with(&app, Some(&with_issuer("https://accounts.google.com"))).await,
        "/push",
        200,
    )
    .await;
    let refused = json_body(
        push_with(&app, Some(&with_issuer("accounts.google.com"))).await,
        "/push",
        403,
    )
    .await;
    assert_eq!(refused["message"], "token issuer is not Google");
    app.stop().await;
}
