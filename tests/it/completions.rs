//! `township completions SHELL` and `township man DIR`, run as the real binary: every script and
//! the main man page name every top-level subcommand, and each subcommand has its own page. The
//! subcommands are read from `township --help`, so a new one is checked without touching this file.

use crate::support::cli::{subcommands, township_with, words};

#[tokio::test]
async fn each_completion_script_names_every_subcommand() {
    let subcommands = subcommands().await;
    let shells = [
        ("bash", "complete -F _township"),
        ("zsh", "#compdef township"),
        ("fish", "complete -c township"),
    ];
    for (shell, marker) in shells {
        let out = township_with(&["completions", shell], &[]).await;
        assert_eq!(out.code, Some(0), "{shell}: {out:?}");
        assert!(out.stderr.is_empty(), "{shell}: {}", out.stderr);
        assert!(
            out.stdout.contains(marker),
            "the {shell} script has no `{marker}`"
        );
        let words = words(&out.stdout);
        for name in &subcommands {
            assert!(
                words.contains(name.as_str()),
                "the {shell} script does not name `{name}`"
            );
        }
    }
}

#[tokio::test]
async fn an_unknown_shell_is_bad_usage() {
    let out = township_with(&["completions", "tcsh"], &[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[tokio::test]
async fn man_writes_a_page_for_township_naming_every_subcommand_and_one_page_each() {
    let subcommands = subcommands().await;
    let dir = tempfile::tempdir().unwrap();
    let man_dir = dir.path().join("man1");
    let out = township_with(&["man", man_dir.to_str().unwrap()], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{}", out.stderr);

    let main_page = std::fs::read_to_string(man_dir.join("township.1")).unwrap();
    assert!(main_page.contains(".TH township 1"), "{main_page}");
    for name in &subcommands {
        // roff escapes the hyphen: the SUBCOMMANDS section lists `township\-time(1)`.
        assert!(
            main_page.contains(&format!("township\\-{name}(1)")),
            "township.1 does not name `{name}`"
        );
        let file = man_dir.join(format!("township-{name}.1"));
        let page = std::fs::read_to_string(&file)
            .unwrap_or_else(|err| panic!("no page {}: {err}", file.display()));
        assert!(
            page.contains(&format!(".TH township-{name} 1")),
            "{}: {page}",
            file.display()
        );
        assert!(
            out.stdout
                .lines()
                .any(|line| line == file.to_str().unwrap()),
            "{} is not listed in {:?}",
            file.display(),
            out.stdout
        );
    }
}
