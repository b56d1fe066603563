//! RoundTrip sales data (seed 003) against the real daemon: the seed's example
//! payloads, matching by search within the tolerance (its edges, DST, the
//! earliest unmatched call, once), replacement by ID, restricted credentials,
//! and CDR ingest.

use crate::common::*;

const NS: &str = "http://www.dial800.com/roundtrip/2011-07-15";

fn config() -> String {
    base_config(
        r#"
[[partner]]
id = "crm"
dialects = ["native"]
username = "crm"
password = "crm-password-0123456789"
provider = "sim"

[[partner]]
id = "agency"
roundtrip = "full"
username = "agency"
password = "agency-password-0123456789"

[[partner]]
id = "center"
roundtrip = "restricted"
roundtrip_targets = ["8881234567"]
username = "center"
password = "center-password-0123456789"

[[provider]]
name = "sim"
kind = "sim"
ring = "0s"
talk = "0s"
"#,
    )
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Posts `body` to /roundtrip as `user` (its password is `<user>-password-0123456789`).
fn post(d: &Daemon, user: &str, content_type: &str, body: &str) -> Response {
    let auth = basic(user, &format!("{user}-password-0123456789"));
    request(
        d.addr,
        &format!(
            "POST /roundtrip HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {auth}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// A search for the call from `ani` to `target` started at `start`.
fn search(ani: &str, target: &str, start: &str) -> String {
    format!(
        "<Call xmlns=\"{NS}\"><ANI>tel:{ani}</ANI><Target>tel:{target}</Target><CallStart>{start}</CallStart></Call>"
    )
}

/// The call id in a 200's `<ID>…</ID>`.
fn matched(r: &Response) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
    let t = r.text();
    t.trim()
        .strip_prefix("<ID>")
        .and_then(|t| t.strip_suffix("</ID>"))
        .unwrap_or_else(|| panic!("{t}"))
        .to_string()
}

/// Ingests CDRs through `POST /v1/cdrs`; returns the answer.
fn cdrs(d: &Daemon, body: serde_json::Value) -> serde_json::Value {
    let body = body.to_string();
    let r = request(
        d.addr,
        &format!(
            "POST /v1/cdrs HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    crate::openapi::check("post", "/v1/cdrs", &r);
    serde_json::from_slice(&r.body).unwrap()
}

/// c2cd's ids of the calls `cdrs` made, in order.
fn ids(v: &serde_json::Value) -> Vec<String> {
    v["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn sales(d: &Daemon, query: &str) -> Vec<serde_json::Value> {
    let r = d.admin_get(&format!("/v1/sales?{query}"), TOKEN);
    assert_eq!(r.status, 200, "{}", r.text());
    crate::openapi::check("get", "/v1/sales", &r);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["sales"].as_array().unwrap().clone()
}

#[test]
fn searches_match_the_earliest_unmatched_call_once_within_the_tolerance() {
    let d = Daemon::start(&config());
    // Three calls from one caller to one target: 0 s, +600 s, +2000 s.
    let pbx = cdrs(
        &d,
        serde_json::json!({"source": "pbx", "cdrs": [
            {"id": "1700000001.1", "ani": "tel:3101234567", "target": "+18881234567",
             "start": "2010-09-01T09:13:31-07:00", "disposition": "ANSWERED", "billable_seconds": 120},
            {"id": "1700000001.2", "ani": "3101234567", "target": "8881234567",
             "start": "2010-09-01T09:23:31-07:00"},
            {"id": "1700000001.3", "ani": "3101234567", "target": "8881234567",
             "start": "2010-09-01T09:46:51-07:00"},
        ]}),
    );
    assert_eq!(
        (pbx["ingested"].as_u64(), pbx["known"].as_u64()),
        (Some(3), Some(0))
    );
    let calls = ids(&pbx);

    // The seed's Example 2, verbatim (its comments open with an em dash).
    let example2 = format!("<Call xmlns=\"{NS}\">\n    <!\u{2014}- Core Data -->\n    <ANI>tel:3101234567</ANI>\n    <Target>tel:8881234567</Target>\n    <CallStart>2010-09-01T09:13:31-07:00</CallStart>\n\n    <!\u{2014}- Supplemental Call Data Should Be Inserted Here -->\n</Call>");
    assert_eq!(
        matched(&post(&d, "agency", "application/xml", &example2)),
        calls[0]
    );
    // Sent again: the earliest call not yet matched (+600 s) is the one.
    assert_eq!(
        matched(&post(&d, "agency", "text/xml", &example2)),
        calls[1]
    );
    // Every call in the window is matched: 409, which says to send the ID.
    let r = post(&d, "agency", "application/xml", &example2);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains(&calls[0]), "{}", r.text());

    // Ingesting the CDRs again changes nothing.
    let again = cdrs(
        &d,
        serde_json::json!({"source": "pbx", "cdrs": [
            {"id": "1700000001.1", "ani": "3101234567", "target": "8881234567",
             "start": "2010-09-01T09:13:31-07:00"}]}),
    );
    assert_eq!(
        (again["ingested"].as_u64(), again["known"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(ids(&again), [calls[0].clone()]);

    // The tolerance is ±900 s, both ends included: the third call (09:46:51)
    // is 901 s past 09:31:50 and exactly 900 s past 09:31:51.
    let r = post(
        &d,
        "agency",
        "application/xml",
        &search("3101234567", "8881234567", "2010-09-01T09:31:50-07:00"),
    );
    assert_eq!(
        r.status,
        409,
        "09:31:50 still finds the matched ones: {}",
        r.text()
    );
    let r = post(
        &d,
        "agency",
        "application/xml",
        &search("3101234567", "8881234567", "2010-09-01T10:01:52-07:00"),
    );
    assert_eq!(r.status, 404, "901 s after the third: {}", r.text());
    assert!(r.text().contains("Call Not Found"), "{}", r.text());
    assert_eq!(
        matched(&post(
            &d,
            "agency",
            "application/xml",
            &search("3101234567", "8881234567", "2010-09-01T10:01:51-07:00")
        )),
        calls[2]
    );

    // DST: 03:30 on the day clocks spring forward in Los Angeles is PDT (-07:00).
    // Sent with PST's offset it is an hour off: not found.
    let dst = cdrs(
        &d,
        serde_json::json!({"cdrs": [{"id": "dst", "ani": "+13105550100", "target": "+18881234567",
                                     "start": "2011-03-13T10:30:00Z"}]}),
    );
    let r = post(
        &d,
        "agency",
        "application/xml",
        &search("3105550100", "8881234567", "2011-03-13T03:30:00-08:00"),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(
        matched(&post(
            &d,
            "agency",
            "application/xml",
            &search("3105550100", "8881234567", "2011-03-13T03:30:00-07:00")
        )),
        ids(&dst)[0]
    );

    // A DNIS narrows the search to calls with that DNIS or none known.
    let tfn = cdrs(
        &d,
        serde_json::json!({"cdrs": [
            {"id": "tfn-a", "ani": "3105550111", "target": "8881234567", "dnis": "tel:8005555555",
             "start": "2012-01-10T12:00:00Z"},
            {"id": "tfn-b", "ani": "3105550111", "target": "8881234567", "dnis": "8005550000",
             "start": "2012-01-10T11:59:00Z"}]}),
    );
    let with_dnis = format!(
        "<Call xmlns=\"{NS}\"><DNIS>tel:8005555555</DNIS><ANI>tel:3105550111</ANI><Target>tel:8881234567</Target><CallStart>2012-01-10T12:00:00Z</CallStart></Call>"
    );
    assert_eq!(
        matched(&post(&d, "agency", "application/xml", &with_dnis)),
        ids(&tfn)[0]
    );

    // What was refused is on record too, newest first.
    let rows = sales(&d, "partner=agency&limit=3");
    assert_eq!(rows[0]["status"], 200);
    assert_eq!(rows[2]["status"], 404);
    assert_eq!(
        rows[2]["error"]
            .as_str()
            .map(|e| e.starts_with("Call Not Found")),
        Some(true)
    );
}

#[test]
fn sales_data_is_replaced_by_id_and_the_history_kept() {
    let d = Daemon::start(&config());
    let pbx = cdrs(
        &d,
        serde_json::json!({"cdrs": [{"id": "b1", "ani": "3105555555", "target": "3109999999",
                                     "start": "2011-07-15T01:02:03-08:00"}]}),
    );
    let call = ids(&pbx)[0].clone();
    // Appendix B, verbatim: the classic form's order gives IsSale, Amount, Items.
    let classic = format!(
        r#"<?xml version="1.0" encoding="utf-8" ?>
<Call xmlns="http://www.dial800.com/roundtrip/2011-07-15"
      xmlns:rs="http://www.dial800.com/roundtrip-sales/2011-08-04">
     <!-- Core Data Per Appendix “A”, above ... -->
     <ANI>tel:3105555555</ANI>
     <Target>tel:3109999999</Target>
     <CallStart>2011-07-15T01:02:03-08:00</CallStart>

     <!{}- Supplemental Form-Based Data Should Be Inserted Here -->
     <rs:Order payment="amex">
		<rs:Item price="100.00">OVEN</rs:Item>
		<rs:Item price="100.00">SPK</rs:Item>
		<rs:Item price="59.72">ERK 3 PAY</rs:Item>
      </rs:Order>
</Call>"#,
        '\u{2014}'
    );
    assert_eq!(
        matched(&post(&d, "agency", "application/roundtrip.sales", &classic)),
        call
    );
    let first = &sales(&d, &format!("call_id={call}"))[0];
    assert_eq!(
        (
            first["is_sale"].as_bool(),
            first["amount_cents"].as_i64(),
            first["payment"].as_str()
        ),
        (Some(true), Some(25972), Some("amex"))
    );
    assert_eq!(first["items"][2]["name"], "ERK 3 PAY");
    assert!(first["body"]
        .as_str()
        .unwrap()
        .contains("<rs:Item price=\"59.72\">"));

    // Example 1 by ID replaces it (no order now: no sale).
    let example1 = format!("<Call xmlns=\"{NS}\">\n    <!\u{2014}- Core Data -->\n    <ID>{call}</ID>\n\n    <!\u{2014}- Supplemental Call Data Should Be Inserted Here -->\n    <Disposition>callback requested</Disposition>\n</Call>");
    assert_eq!(
        matched(&post(&d, "agency", "application/xml", &example1)),
        call
    );
    let history = sales(&d, &format!("call_id={call}"));
    assert_eq!(history.len(), 2);
    // The operator's CLI shows the same.
    let cli = c2cd_ok([
        "sales".as_ref(),
        "list".as_ref(),
        "--config".as_ref(),
        d.config.as_os_str(),
        "--call".as_ref(),
        call.as_ref(),
    ]);
    let lines: Vec<&str> = cli.lines().collect();
    assert_eq!(lines.len(), 3, "{cli}");
    assert!(
        lines[2].contains("search") && lines[2].contains("259.72"),
        "{cli}"
    );
    assert_eq!(
        (
            history[0]["current"].as_bool(),
            history[1]["current"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(history[0]["how"], "id");
    assert!(history[0]["is_sale"].is_null());

    // An unknown ID is not found.
    let r = post(
        &d,
        "agency",
        "application/xml",
        &format!("<Call xmlns=\"{NS}\"><ID>X089341KJH941KJ2H4O985</ID></Call>"),
    );
    assert_eq!(r.status, 404, "{}", r.text());

    // Appendix A verbatim sends <ID> with the other core data: 400, as the seed says.
    let appendix_a = format!("<Call xmlns=\"{NS}\">\n    <!\u{2014}- Core Data -->\n    <ID>{call}</ID>\n    <DNIS>tel:8005555555</DNIS>\n    <ANI>tel:3105555555</ANI>\n    <Target>tel:3109999999</Target>\n    <CallStart>2011-07-15T01:02:03-08:00</CallStart>\n\n    <!\u{2014}- Supplemental Form-Based Data Should Be Inserted Here -->\n</call>");
    let r = post(&d, "agency", "application/xml", &appendix_a);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("&lt;ID&gt; must be sent on its own"),
        "{}",
        r.text()
    );
}

#[test]
fn bad_submissions_get_their_status_and_are_recorded() {
    let d = Daemon::start(&config());
    let ok = search("3101234567", "8881234567", "2010-09-01T09:13:31-07:00");
    for (user, password, ctype, body, status, why) in [
        (
            "agency",
            "wrong-password-0123456789",
            "application/xml",
            ok.clone(),
            401,
            "no or wrong credentials",
        ),
        (
            "crm",
            "crm-password-0123456789",
            "application/xml",
            ok.clone(),
            403,
            "no RoundTrip access",
        ),
        (
            "agency",
            "agency-password-0123456789",
            "application/json",
            ok.clone(),
            415,
            "Content-Type",
        ),
        (
            "agency",
            "agency-password-0123456789",
            "application/xml",
            "<Call>".into(),
            400,
            "root must be",
        ),
        (
            "agency",
            "agency-password-0123456789",
            "application/xml",
            search("3101234567", "8881234567", "2010-09-01T09:13:31"),
            400,
            "with its offset",
        ),
        (
            "agency",
            "agency-password-0123456789",
            "application/xml",
            search("+442071234567", "8881234567", "2010-09-01T09:13:31Z"),
            400,
            "not a NANPA number",
        ),
        (
            "center",
            "center-password-0123456789",
            "application/xml",
            search("3101234567", "3109999999", "2010-09-01T09:13:31Z"),
            403,
            "not one of this partner",
        ),
    ] {
        let auth = basic(user, password);
        let r = request(
            d.addr,
            &format!(
                "POST /roundtrip HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {auth}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        );
        assert_eq!(r.status, status, "{user} {ctype} {body}: {}", r.text());
        assert!(r.text().contains(why), "{}", r.text());
        if status == 401 {
            assert_eq!(
                r.header("www-authenticate"),
                Some("Basic realm=\"roundtrip\"")
            );
        }
    }
    let rows = sales(&d, "limit=20");
    let statuses: Vec<u64> = rows
        .iter()
        .rev()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [401, 403, 415, 400, 400, 400, 403]);
    // Who tried is kept; the password never is.
    assert_eq!(rows[6]["username"], "agency");
    let all = serde_json::to_string(&rows).unwrap();
    assert!(!all.contains("wrong-password"), "{all}");
}

#[test]
fn restricted_partners_post_for_their_targets_and_c2cds_own_calls_match() {
    let d = Daemon::start(&config());
    // A call c2cd placed: ANI is A, Target B, CallStart when it was requested.
    use base64::Engine;
    let body = serde_json::json!({
        "a": {"participants": [{"number": "+13105550123"}]},
        "b": {"participants": [{"number": "+18881234567"}]},
    })
    .to_string();
    let auth = base64::engine::general_purpose::STANDARD.encode("crm:crm-password-0123456789");
    let r = request(
        d.addr,
        &format!(
            "POST /v1/calls HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.call_id();
    let created = d.call(&id)["created_at"].as_str().unwrap().to_string();

    // The call center's number is the Target: it may post for the call.
    let found = matched(&post(
        &d,
        "center",
        "application/xml",
        &search("3105550123", "8881234567", &created),
    ));
    assert_eq!(found, id);
    // And replace it by ID; a call to another number is not its to touch.
    let by_id = format!("<Call xmlns=\"{NS}\"><ID>{id}</ID></Call>");
    assert_eq!(matched(&post(&d, "center", "application/xml", &by_id)), id);
    let other = cdrs(
        &d,
        serde_json::json!({"cdrs": [{"id": "o1", "ani": "3105550123", "target": "3109999999",
                                     "start": "2011-07-15T01:02:03Z"}]}),
    );
    let r = post(
        &d,
        "center",
        "application/xml",
        &format!("<Call xmlns=\"{NS}\"><ID>{}</ID></Call>", ids(&other)[0]),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    // A partner sees its own submissions only.
    let mine = request(
        d.addr,
        &format!(
            "GET /v1/sales HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {}\r\nConnection: close\r\n\r\n",
            basic("center", "center-password-0123456789")
        ),
    );
    assert_eq!(mine.status, 200, "{}", mine.text());
    let v: serde_json::Value = serde_json::from_slice(&mine.body).unwrap();
    let partners: Vec<&str> = v["sales"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["partner_id"].as_str().unwrap())
        .collect();
    assert_eq!(partners, ["center", "center", "center"]);
}

/// The nightly export writes yesterday (in Los Angeles) with its sales, once.
#[test]
fn the_export_writes_each_day_once() {
    let d = Daemon::start(&config());
    let la = jiff::tz::TimeZone::get("America/Los_Angeles").unwrap();
    let yesterday = jiff::Zoned::now()
        .with_time_zone(la)
        .date()
        .yesterday()
        .unwrap();
    let noon = format!("{yesterday}T12:00:00-08:00");
    let pbx = cdrs(
        &d,
        serde_json::json!({"cdrs": [{"id": "x1", "ani": "3105550100", "target": "8881234567",
                                     "start": noon, "disposition": "ANSWERED", "billable_seconds": 61}]}),
    );
    let call = ids(&pbx)[0].clone();
    let order = format!(
        "<Call xmlns=\"{NS}\" xmlns:rs=\"http://www.dial800.com/roundtrip-sales/2011-08-04\"><ID>{call}</ID><rs:Order payment=\"visa\"><rs:Item price=\"19.99\">HAT, RED</rs:Item></rs:Order></Call>"
    );
    assert_eq!(
        matched(&post(&d, "agency", "application/roundtrip.sales", &order)),
        call
    );

    let out = tempfile::tempdir().unwrap();
    let run = || {
        c2cd_ok([
            "export".as_ref(),
            "--config".as_ref(),
            d.config.as_os_str(),
            "--dir".as_ref(),
            out.path().as_os_str(),
        ])
    };
    let first = run();
    assert!(first.contains(&format!("{yesterday}: ")), "{first}");
    let csv =
        std::fs::read_to_string(out.path().join(format!("c2cd-sales-{yesterday}.csv"))).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("call_id,source,partner_id,ani,target,dnis,call_start,state,billable_seconds,sale_id,sale_partner,matched_at,is_sale,amount,payment,items")
    );
    let line = lines.next().unwrap();
    assert!(
        line.starts_with(&format!("{call},api,,+13105550100,+18881234567,,")),
        "{line}"
    );
    assert!(line.contains(",ANSWERED,61,"), "{line}");
    assert!(line.contains(",agency,"), "{line}");
    assert!(
        line.contains(",true,19.99,visa,\"[{\"\"name\"\":\"\"HAT, RED\"\""),
        "{line}"
    );
    let xml =
        std::fs::read_to_string(out.path().join(format!("c2cd-sales-{yesterday}.xml"))).unwrap();
    assert!(
        xml.contains("<Item price=\"19.99\">HAT, RED</Item>"),
        "{xml}"
    );
    assert!(xml.contains("<Submitted><![CDATA[<Call xmlns="), "{xml}");

    // Run again: the day is recorded, nothing is written twice.
    let second = run();
    assert!(second.contains("nothing to export"), "{second}");

    // A window of one's own is written and not recorded.
    let window = c2cd_ok([
        "export".as_ref(),
        "--config".as_ref(),
        d.config.as_os_str(),
        "--dir".as_ref(),
        out.path().as_os_str(),
        "--since".as_ref(),
        yesterday.to_string().as_ref(),
        "--until".as_ref(),
        yesterday.tomorrow().unwrap().to_string().as_ref(),
    ]);
    assert!(window.contains(": 1 calls"), "{window}");
}
