//! What an app must not see: nap's data directory, the control socket, the daemon's home,
//! the host's secrets; and that what it does see is an allowlist.

use std::collections::BTreeSet;

use crate::both_modes;
use crate::util::{Fixture, SECRET_FILES, secret_marker};

both_modes! {
    async fn nothing_of_the_data_directory_is_visible(fx: Fixture) {
        let mut script = String::new();
        for file in SECRET_FILES {
            let path = fx.data_dir.join(file);
            script.push_str(&format!("cat '{}' 2>&1; ", path.display()));
        }
        script.push_str(&format!(
            "ls -la '{data}' '{home}' 2>&1; cat /app/../../../../data/users.json 2>&1; \
             cat '{home}/.ssh/id_ed25519' 2>&1",
            data = fx.data_dir.display(),
            home = fx.home.display(),
        ));
        let run = fx.sh(&script).await;
        for file in SECRET_FILES {
            assert!(!run.stdout.contains(&secret_marker(file)), "{file} leaked: {run:#?}");
        }
        assert!(!run.stdout.contains(&secret_marker("home key")), "{run:#?}");
        // Not under another name either: nothing anywhere in the sandbox looks like them.
        let found = fx
            .sh("find / -path /proc -prune -o \\( -name users.json -o -name host_key \
                 -o -name nap.sock -o -name 'zz-other-app*' -o -name id_ed25519 -o -name app.txt \\) -print")
            .await;
        // The app's own file is found: the search did look.
        assert_eq!(found.stdout, "/app/app.txt\n", "{found:#?}");
        assert!(run.stdout.contains("No such file or directory"), "{run:#?}");
    }
}

both_modes! {
    async fn the_control_socket_cannot_be_reached(fx: Fixture) {
        let script = format!(
            "python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); s.connect(\"{}\")' \
             2>&1 | tail -n 1",
            fx.control_socket.display()
        );
        let run = fx.sh(&script).await;
        assert!(run.stdout.contains("FileNotFoundError"), "{run:#?}");
        // The same attempt outside the sandbox connects, so the test tries something real.
        std::os::unix::net::UnixStream::connect(&fx.control_socket).expect("connects outside");
    }
}

both_modes! {
    async fn host_secrets_are_not_there(fx: Fixture) {
        let run = fx
            .sh("for p in /root /home /etc/shadow /etc/gshadow /etc/ssh /etc/ssl/private \
                 /var /run /sys /etc/machine-id /boot /srv /opt; do \
                 [ -e $p ] && echo \"present: $p\"; done; \
                 cat /etc/shadow 2>&1; true")
            .await
            .ok();
        assert!(!run.stdout.contains("present"), "{run:#?}");
        assert!(run.stdout.contains("No such file or directory"), "{run:#?}");
        assert!(std::path::Path::new("/etc/shadow").exists(), "the host has a shadow file");
    }
}

both_modes! {
    async fn the_filesystem_is_an_allowlist(fx: Fixture) {
        let run = fx.sh("ls -A /; echo ---; ls -A /etc").await.ok();
        let (top, etc) = run.stdout.split_once("---\n").expect("two listings");
        let top: BTreeSet<&str> = top.lines().collect();
        let allowed_top: BTreeSet<&str> = [
            "app", "bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin",
            "storage", "tmp", "usr",
        ]
        .into();
        assert!(top.is_subset(&allowed_top), "unexpected at /: {top:?}");
        let etc: BTreeSet<&str> = etc.lines().collect();
        let allowed_etc: BTreeSet<&str> = [
            "resolv.conf", "hosts", "host.conf", "nsswitch.conf", "gai.conf", "services",
            "protocols", "networks", "ssl", "pki", "crypto-policies", "alternatives",
            "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "mime.types",
            "fonts", "passwd", "group", "mtab",
        ]
        .into();
        assert!(etc.is_subset(&allowed_etc), "unexpected in /etc: {etc:?}");
        assert!(etc.contains("ld.so.cache") && etc.contains("passwd"), "{etc:?}");
        let ssl = fx.sh("ls -A /etc/ssl").await.ok();
        assert_eq!(ssl.stdout.lines().collect::<BTreeSet<_>>(), ["certs", "openssl.cnf"].into());
    }
}
