use std::net::{IpAddr, Ipv4Addr};

use super::*;

/// `url` parses to a remote on `transport`, host `host` (an address or a
/// name), port `port`.
#[track_caller]
fn remote(url: &str, transport: Transport, host: &str, port: u16) {
    let parsed = match parse_git_url(url) {
        Ok(GitUrl::Remote(parsed)) => parsed,
        other => panic!("{url}: {other:?}"),
    };
    let expected = match host.parse::<IpAddr>() {
        Ok(address) => Host::Address(address),
        Err(_) => Host::Name(host.to_owned()),
    };
    assert_eq!(
        (parsed.transport, &parsed.host, parsed.port),
        (transport, &expected, port),
        "{url}"
    );
}

#[track_caller]
fn refused(url: &str, expected: UrlError) {
    assert_eq!(parse_git_url(url), Err(expected), "{url}");
}

#[test]
fn every_url_form_of_the_allowed_transports() {
    use Transport::*;
    remote("https://example.com/r.git", Https, "example.com", 443);
    remote("https://example.com", Https, "example.com", 443);
    remote("http://example.com:8080/r", Http, "example.com", 8080);
    remote("http://example.com:/r", Http, "example.com", 80);
    remote(
        "https://bob:s3cr%40t@example.com/r",
        Https,
        "example.com",
        443,
    );
    remote("http://[2606:4700::1]:81/r", Http, "2606:4700::1", 81);
    remote("http://[fe80::1%25eth0]/r", Http, "fe80::1", 80);
    remote("git://example.com/r.git", Git, "example.com", 9418);
    remote("git://example.com:9999/~bob/r", Git, "example.com", 9999);
    remote("git://[::1]:9999/r", Git, "::1", 9999);
    remote("git://[example.com]/r", Git, "example.com", 9418);
    remote("ssh://example.com/r", Ssh, "example.com", 22);
    remote("ssh://git@example.com:2222/r", Ssh, "example.com", 2222);
    remote("ssh://git@[::1]:22/r", Ssh, "::1", 22);
    remote("ssh://[example.com]:22/r", Ssh, "example.com", 22);
    remote("git+ssh://example.com/r", Ssh, "example.com", 22);
    remote("ssh+git://example.com/r", Ssh, "example.com", 22);
    remote("git@example.com:r.git", Ssh, "example.com", 22);
    remote("example.com:r.git", Ssh, "example.com", 22);
    remote("example.com:/~bob/r.git", Ssh, "example.com", 22);
    remote("git@example.com:22:r", Ssh, "example.com", 22);
    remote("[::1]:r", Ssh, "::1", 22);
    remote("git@[::1]:r", Ssh, "::1", 22);
    remote("[example.com:2222]:r", Ssh, "example.com", 2222);
    remote("[git@example.com:2222]:r", Ssh, "example.com", 2222);
    remote("[git@::1]:r", Ssh, "::1", 22);
    remote("HOST:r", Ssh, "HOST", 22);
    remote("ssh://example.com./r", Ssh, "example.com.", 22);
}

#[test]
fn hosts_in_every_ipv4_spelling_are_addresses() {
    for url in [
        "http://127.0.0.1:8080/",
        "http://2130706433:8080/",
        "http://0x7f000001:8080/",
        "http://0177.0.0.1:8080/",
        "http://127.1:8080/",
        "http://0x7f.0.0.1:8080/",
        "git://0x7f000001:8080/r",
        "ssh://017700000001:8080/r",
    ] {
        let Ok(GitUrl::Remote(parsed)) = parse_git_url(url) else {
            panic!("{url}");
        };
        assert_eq!(
            parsed.host,
            Host::Address(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{url}"
        );
        assert_eq!(parsed.port, 8080);
    }
    // A trailing dot makes a name for curl and the resolver alike.
    remote("http://127.0.0.1.:80/", Transport::Http, "127.0.0.1.", 80);
}

#[test]
fn local_paths_and_file_urls() {
    for url in [
        "file:///srv/r.git",
        "/srv/r.git",
        "./r.git",
        "../r.git",
        "dir/r.git",
        "./x:y",
        "dir/a:b",
    ] {
        assert_eq!(parse_git_url(url), Ok(GitUrl::Local), "{url}");
    }
}

#[test]
fn what_is_refused() {
    refused("", UrlError::NotAUrl);
    refused("repo", UrlError::NotAUrl);
    refused("-uhttps://x", UrlError::OptionLike);
    refused("--upload-pack=sh", UrlError::OptionLike);
    refused("ext::sh -c id", UrlError::Character(' '));
    refused("ext::sh", UrlError::Helper);
    refused("fd::3", UrlError::Helper);
    refused("a+b.c-d::x", UrlError::Helper);
    refused("ftp://example.com/r", UrlError::Scheme("ftp".into()));
    refused("HTTP://example.com/r", UrlError::Scheme("HTTP".into()));
    refused(
        "http://ex%61mple.com/r",
        UrlError::Host("ex%61mple.com".into()),
    );
    refused(
        "http://%31%32%37.0.0.1/r",
        UrlError::Host("%31%32%37.0.0.1".into()),
    );
    refused("git://%68ost/r", UrlError::Host("%68ost".into()));
    refused("http://a@b@example.com/r", UrlError::Ats);
    refused("a@b@example.com:r", UrlError::Ats);
    refused("http://example.com/r?x", UrlError::Character('?'));
    refused("http://evil.com#@127.0.0.1/", UrlError::Character('#'));
    refused("http://example.com\\@127.0.0.1/", UrlError::Character('\\'));
    refused("http://exa\tmple.com/", UrlError::Character('\t'));
    refused(
        "http://[example.com]/r",
        UrlError::Host("[example.com]".into()),
    );
    refused("http://[::1/r", UrlError::Host("[::1".into()));
    refused("http://[::1]x/r", UrlError::Host("[::1]x".into()));
    refused("http://:80/r", UrlError::Host("".into()));
    refused("http:///r", UrlError::Host("".into()));
    refused("http://-x.com/r", UrlError::Host("-x.com".into()));
    refused("http://a..b/r", UrlError::Host("a..b".into()));
    refused("http://exämple.com/r", UrlError::Host("exämple.com".into()));
    refused("http://example.com:0/r", UrlError::Port("0".into()));
    refused("http://example.com:65536/r", UrlError::Port("65536".into()));
    refused("http://example.com:+80/r", UrlError::Port("+80".into()));
    refused("http://example.com:80x/r", UrlError::Port("80x".into()));
    refused("git://a:b:99/r", UrlError::Port("b:99".into()));
    refused("git://user@example.com/r", UrlError::NoUserForGit);
    refused(
        "ssh://-oProxyCommand=x/r",
        UrlError::Host("-oProxyCommand=x".into()),
    );
    refused("ssh://-l@example.com/r", UrlError::User("-l".into()));
    refused("ssh://us:er@example.com/r", UrlError::User("us:er".into()));
    refused("-oProxyCommand=x:r", UrlError::OptionLike);
    refused("http://us er@example.com/", UrlError::Character(' '));
    refused("http://u\"@example.com/", UrlError::Character('"'));
    refused("http://u%zz@example.com/", UrlError::Character('%'));
    refused(
        &format!("https://{}/", "a".repeat(MAX_URL_LEN)),
        UrlError::TooLong,
    );
}

#[test]
fn the_host_can_be_swapped_for_the_checked_address() {
    let url = "git://example.com:9999/~bob/r";
    let Ok(GitUrl::Remote(parsed)) = parse_git_url(url) else {
        panic!("{url}");
    };
    assert_eq!(
        parsed.with_address(url, "192.0.2.7".parse().unwrap()),
        "git://192.0.2.7:9999/~bob/r"
    );
    assert_eq!(
        parsed.with_address(url, "2001:db8::7".parse().unwrap()),
        "git://[2001:db8::7]:9999/~bob/r"
    );
    let url = "git://[example.com]/r";
    let Ok(GitUrl::Remote(parsed)) = parse_git_url(url) else {
        panic!("{url}");
    };
    assert_eq!(
        parsed.with_address(url, "192.0.2.7".parse().unwrap()),
        "git://192.0.2.7/r"
    );
}

#[test]
fn the_host_text_is_what_curl_looks_up() {
    for (url, text) in [
        ("https://Example.COM./r", "Example.COM."),
        ("http://[fe80::1%25eth0]:8/r", "fe80::1"),
        ("https://u:p@example.com:1/r", "example.com"),
    ] {
        let Ok(GitUrl::Remote(parsed)) = parse_git_url(url) else {
            panic!("{url}");
        };
        assert_eq!(parsed.host_text, text, "{url}");
    }
}
