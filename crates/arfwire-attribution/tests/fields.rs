//! Header-field parser tests (attribution specification §13.3, H01–H10), with values of our
//! own in the shapes the specification documents.

use std::net::IpAddr;

use arfwire_attribution::fields::{
    Cip, auth_results, connecting_ip, forefront, is_moera, original_arrival_time, received_spf,
    traffic_type_diagnostic,
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP")
}

#[test]
fn h01_connecting_ip_with_spaces_and_folding() {
    let value = "TenantId=7b0c2d4e-1111-4a2b-9c3d-5e6f70819202; Ip=[198.51.100.17];\r\n Helo=[GW01.northwind.example]";
    let c = connecting_ip(value);
    assert_eq!(
        c.tenant_id.as_deref(),
        Some("7b0c2d4e-1111-4a2b-9c3d-5e6f70819202")
    );
    assert_eq!(c.ip, Some(ip("198.51.100.17")));
    assert_eq!(c.helo.as_deref(), Some("GW01.northwind.example"));
}

#[test]
fn h02_forefront_report_fields() {
    let value = "CIP:198.51.100.17; CTRY:US; LANG:en; SCL:1; SRV:;\r\n IPV:CAL; SFV:NSPM; H:GW01.northwind.example; PTR:InfoDomainNonexistent; CAT:NONE;\r\n SFS:(13230031)(82310400014)(36860700004)(376005)(1800799015); DIR:OUT;\r\n SFP:1101; ";
    let f = forefront(value);
    assert_eq!(f.cip(), Some(Cip::Ip(ip("198.51.100.17"))));
    assert_eq!(f.get("IPV"), Some("CAL"));
    assert_eq!(f.dir(), Some("OUT"));
    assert_eq!(f.get("H"), Some("GW01.northwind.example"));
    assert_eq!(f.get("PTR"), Some("InfoDomainNonexistent"));
    assert_eq!(f.get("SRV"), Some(""));
    assert_eq!(f.sfs().len(), 5);
}

#[test]
fn h02b_ipv6_cip_splits_on_first_colon_only() {
    let f = forefront("CIP:2001:db8::25;CTRY:;DIR:OUT;");
    assert_eq!(f.cip(), Some(Cip::Ip(ip("2001:db8::25"))));
    assert_eq!(f.get("CTRY"), Some(""));
}

#[test]
fn h03_hidden_cip() {
    let f = forefront("CIP:255.255.255.255;CTRY:;LANG:en;SCL:1;DIR:OUT;");
    assert_eq!(f.cip(), Some(Cip::Hidden));
}

#[test]
fn h04_arrival_time_with_fraction_and_folding() {
    let t = original_arrival_time("05 Mar 2023 21:28:18.0052\r\n (UTC)").expect("parses");
    assert_eq!(t, 1_678_051_698);
    assert_eq!(original_arrival_time("not a date"), None);
    assert_eq!(original_arrival_time("31 Feb 2023 10:00:00"), None);
}

#[test]
fn h07_traffic_type_diagnostic() {
    assert_eq!(
        traffic_type_diagnostic("SN1PEPF0000ABCD:EE_|MN2PR12MB9999:EE_"),
        vec!["SN1PEPF0000ABCD".to_owned(), "MN2PR12MB9999".to_owned()]
    );
}

#[test]
fn h08_authserv_id_in_the_middle() {
    let value = "spf=pass (sender IP is 203.0.113.198)\r\n smtp.mailfrom=bounces.tailspin.example; mail.example; dkim=pass (signature was\r\n verified) header.d=tailspin.example;mail.example; dmarc=pass action=none\r\n header.from=tailspin.example;";
    let ar = auth_results(value);
    let spf = ar.method("spf").expect("spf");
    assert_eq!(spf.result, "pass");
    assert_eq!(spf.comment_ip, Some(ip("203.0.113.198")));
    assert_eq!(
        spf.property("smtp.mailfrom"),
        Some("bounces.tailspin.example")
    );
    let dkim = ar.method("dkim").expect("dkim");
    assert_eq!(dkim.property("header.d"), Some("tailspin.example"));
    let dmarc = ar.method("dmarc").expect("dmarc");
    assert_eq!(dmarc.property("header.from"), Some("tailspin.example"));
    assert_eq!(ar.authserv_id.as_deref(), Some("mail.example"));
    assert_eq!(ar.client_ip(), Some(ip("203.0.113.198")));
}

#[test]
fn h08_standard_form() {
    let ar = auth_results("mx.example.net; arc=fail smtp.client-ip=40.107.1.2");
    assert_eq!(ar.authserv_id.as_deref(), Some("mx.example.net"));
    assert_eq!(ar.client_ip(), Some(ip("40.107.1.2")));
    // A7: an empty value yields nothing and no error.
    assert!(auth_results("").results.is_empty());
}

#[test]
fn h09_arc_authentication_results() {
    let value = "i=1; mx.microsoft.com 1; spf=pass (sender ip is\r\n 198.51.100.17) smtp.rcpttodomain=example.org smtp.mailfrom=northwind.example; dmarc=pass\r\n (p=quarantine sp=quarantine pct=100) action=none header.from=northwind.example;\r\n dkim=none (message not signed); arc=none (0)";
    let aar = auth_results(value);
    assert_eq!(aar.instance, Some(1));
    assert_eq!(aar.authserv_id.as_deref(), Some("mx.microsoft.com"));
    assert_eq!(aar.client_ip(), Some(ip("198.51.100.17")));
    assert_eq!(
        aar.method("spf").and_then(|r| r.property("smtp.mailfrom")),
        Some("northwind.example")
    );
}

#[test]
fn h10_moera_selector_pattern() {
    assert!(is_moera(
        "northwind.onmicrosoft.com",
        Some("selector2-northwind-onmicrosoft-com")
    ));
    assert!(is_moera(
        "northwind.onmicrosoft.com",
        Some("Selector1-Northwind-onmicrosoft-com")
    ));
    assert!(!is_moera("northwind.onmicrosoft.com", Some("s1")));
    assert!(!is_moera(
        "northwind.example",
        Some("selector1-northwind-example")
    ));
}

#[test]
fn received_spf_client_ip_and_receiver() {
    let spf = received_spf(
        "Pass (protection.outlook.com: domain of northwind.example designates\r\n 198.51.100.17 as permitted sender) receiver=protection.outlook.com;\r\n client-ip=198.51.100.17; helo=GW01.northwind.example; pr=C",
    );
    assert_eq!(spf.result.as_deref(), Some("pass"));
    assert_eq!(spf.client_ip, Some(ip("198.51.100.17")));
    assert_eq!(spf.receiver.as_deref(), Some("protection.outlook.com"));
}

#[test]
fn parsers_are_total_on_junk() {
    for junk in ["", ";;;", "(((((", "=[=]=", "\u{0}\u{1}", "CIP:", "i=; ;="] {
        let _ = connecting_ip(junk);
        let _ = forefront(junk).cip();
        let _ = auth_results(junk).client_ip();
        let _ = received_spf(junk);
        let _ = original_arrival_time(junk);
        let _ = traffic_type_diagnostic(junk);
    }
}
