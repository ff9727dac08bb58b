//! `dbkeeper man`: man pages generated from the clap definitions (so they never disagree with
//! `--help`), one per command as man(1) readers expect (`man dbkeeper-migrate-up`), each with the
//! sections clap knows nothing about: ENVIRONMENT, FILES, EXIT STATUS, EXAMPLES, SEE ALSO.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use roff::{bold, roman, Roff};

use dbkeeper::error::{Error, Result};
use dbkeeper::ExitCode;

use super::args::Cli;

/// Prints the page of `command` (e.g. `["migrate", "up"]`; empty for dbkeeper(1)) to stdout, or
/// writes every page into `dir`.
pub fn run(command: &[String], dir: Option<&Path>) -> Result<ExitCode> {
    let root = root_command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            for page in pages(&root) {
                let path = dir.join(format!("{}.1", display_name(&page)));
                let text = render(&page)?;
                std::fs::write(&path, text)
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            }
        }
        None => {
            let mut page = &root;
            for name in command {
                page = page.find_subcommand(name).ok_or_else(|| {
                    Error::Usage(format!(
                        "no man page for `{} {name}`: its commands are {}",
                        page.get_bin_name().unwrap_or("dbkeeper"),
                        page.get_subcommands()
                            .map(|s| s.get_name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            }
            std::io::stdout()
                .write_all(&render(page)?)
                .map_err(|e| Error::io("writing the man page to stdout", e))?;
        }
    }
    Ok(ExitCode::Ok)
}

/// The command tree as the pages show it: built (so every subcommand knows its full name) and
/// without clap's implicit `help` subcommand, which has no page.
fn root_command() -> clap::Command {
    fn without_help(cmd: clap::Command) -> clap::Command {
        cmd.disable_help_subcommand(true)
            .mut_subcommands(without_help)
    }
    let mut cmd = without_help(Cli::command());
    cmd.build();
    cmd
}

/// `cmd` and all its subcommands, depth first.
fn pages(cmd: &clap::Command) -> Vec<clap::Command> {
    let mut all = vec![cmd.clone()];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        all.extend(pages(sub));
    }
    all
}

/// `dbkeeper-migrate-up`: the page's name, as clap_mangen names it in SUBCOMMANDS references.
fn display_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string()
}

fn render(cmd: &clap::Command) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .map_err(|e| Error::io("rendering a man page", e))?;
    let mut extra = Roff::default();
    environment(&mut extra);
    files(&mut extra);
    exit_status(&mut extra);
    examples(&mut extra, cmd);
    see_also(&mut extra, cmd);
    out.extend(extra.render().into_bytes());
    Ok(out)
}

fn tagged(roff: &mut Roff, tag: &str, text: &str) {
    roff.control("TP", []).text([bold(tag)]).text([roman(text)]);
}

fn environment(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, text) in [
        (
            "DBKEEPER_PG_URL",
            "PostgreSQL URL when --pg-url is not given. libpq's sslmode, sslrootcert, sslcert and sslkey parameters are honoured.",
        ),
        (
            "DATABASE_URL",
            "PostgreSQL URL when neither --pg-url nor DBKEEPER_PG_URL is set (only a postgres:// URL).",
        ),
        (
            "DBKEEPER_MONGO_URL",
            "MongoDB URL when --mongo-url is not given; the database comes from its path.",
        ),
        (
            "MONGODB_URI",
            "MongoDB URL when neither --mongo-url nor DBKEEPER_MONGO_URL is set.",
        ),
        (
            "DBKEEPER_MONGO_DB",
            "MongoDB database name, overriding the URL's path.",
        ),
        (
            "DBKEEPER_PG_BIN",
            "Directory holding pg_dump and psql (else PATH and /usr/lib/postgresql/*/bin).",
        ),
        (
            "RUST_LOG",
            "Log filter, overriding -v and -q (e.g. dbkeeper=debug).",
        ),
        ("NO_COLOR", "When set and not empty, logs are not coloured."),
    ] {
        tagged(roff, name, text);
    }
}

fn files(roff: &mut Roff) {
    roff.control("SH", ["FILES"]);
    tagged(
        roff,
        "dbkeeper.toml",
        "Configuration in the working directory (or --config FILE): [postgres], [mongo], [backup], [migrate] and [retention]. Flags override the environment, which overrides the file.",
    );
    tagged(
        roff,
        "migrations/, mongo_migrations/",
        "Versioned migration files: V{n}__{name}.sql with V{n}__{name}.down.sql, and V{n}__{name}.json with V{n}__{name}.down.json.",
    );
    tagged(
        roff,
        "backups/",
        "Default backup directory; archives are named dbkeeper-TIMESTAMP.dbk.tar.",
    );
}

fn exit_status(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    for (code, text) in [
        ("0", "Everything asked for was done and every check passed."),
        (
            "1",
            "A check failed: a verify mismatch, migration drift, or pending migrations with status --exit-code.",
        ),
        (
            "2",
            "Usage, configuration or bad input file (including a damaged archive given to restore).",
        ),
        (
            "3",
            "Runtime failure: connection, SQL, I/O, lock timeout.",
        ),
        (
            "4",
            "Refused for safety: non-empty restore target, target is the source, dirty migration state.",
        ),
        ("130", "Interrupted (Ctrl-C or SIGTERM)."),
    ] {
        tagged(roff, code, text);
    }
}

/// Command lines worth copying, per page.
fn examples_for(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        "dbkeeper" => &[
            ("dbkeeper migrate up --backup-first", "Deploy: a verified backup, then the pending migrations."),
            ("dbkeeper backup --prune", "Nightly backup into the configured directory, then retention."),
            ("dbkeeper restore backups/dbkeeper-20261124T023000Z.dbk.tar --pg-url postgres://localhost/app_test", "Restore into a test database and verify it."),
        ],
        "dbkeeper-migrate" | "dbkeeper-migrate-status" => &[
            ("dbkeeper migrate status --exit-code", "Exit 1 while migrations are pending or drifted."),
        ],
        "dbkeeper-migrate-up" => &[
            ("dbkeeper migrate up --backup-first", "Back up and verify, then apply everything pending."),
            ("dbkeeper migrate up --to 7 --dry-run", "Show what applying up to version 7 would run."),
        ],
        "dbkeeper-migrate-down" => &[
            ("dbkeeper migrate down --steps 1", "Roll back the newest migration."),
        ],
        "dbkeeper-migrate-validate" => &[
            ("dbkeeper migrate validate", "Exit 1 when a file no longer matches its recorded checksum."),
        ],
        "dbkeeper-migrate-new" => &[
            ("dbkeeper migrate new add_orders --engine postgres", "Create the next SQL migration pair."),
        ],
        "dbkeeper-migrate-baseline" => &[
            ("dbkeeper migrate baseline 3", "Record an existing schema as migrated up to version 3."),
        ],
        "dbkeeper-migrate-repair" => &[
            ("dbkeeper migrate repair --dirty rolled-back", "Forget a dirty migration whose effects were undone."),
        ],
        "dbkeeper-backup" => &[
            ("dbkeeper backup --output /var/backups/app --jobs 4", "Back up both configured databases."),
            ("dbkeeper backup --output - > app.dbk.tar", "Stream the archive to stdout."),
        ],
        "dbkeeper-restore" => &[
            ("dbkeeper restore app.dbk.tar --pg-url postgres://localhost/app_test --mongo-url mongodb://localhost/app_test", "Restore into empty test databases and verify counts."),
            ("dbkeeper restore app.dbk.tar --mode replace --deep", "Replace the configured targets and compare every row's content."),
        ],
        "dbkeeper-verify" => &[
            ("dbkeeper verify app.dbk.tar", "Check the archive offline."),
            ("dbkeeper verify app.dbk.tar --deep --pg-url postgres://localhost/app_test", "Also compare a restored database with the archive."),
        ],
        "dbkeeper-list" => &[("dbkeeper list /var/backups/app", "List archives, newest first.")],
        "dbkeeper-prune" => &[
            ("dbkeeper prune --keep-daily 7 --keep-weekly 4 --dry-run", "Show which archives a policy would delete."),
        ],
        "dbkeeper-ping" => &[("dbkeeper ping", "Check that the configured databases answer.")],
        "dbkeeper-completions" => &[
            ("dbkeeper completions bash > /etc/bash_completion.d/dbkeeper", "Install bash completions."),
        ],
        "dbkeeper-man" => &[
            ("dbkeeper man --dir /usr/local/share/man/man1", "Install every page."),
            ("dbkeeper man migrate up | man -l -", "Read one command's page."),
        ],
        _ => &[],
    }
}

fn examples(roff: &mut Roff, cmd: &clap::Command) {
    let examples = examples_for(&display_name(cmd));
    if examples.is_empty() {
        return;
    }
    roff.control("SH", ["EXAMPLES"]);
    for (line, text) in examples {
        tagged(roff, line, text);
    }
}

/// The parent page and dbkeeper(1); every reference names a page `--dir` writes.
fn see_also(roff: &mut Roff, cmd: &clap::Command) {
    let name = display_name(cmd);
    let Some((parent, _)) = name.rsplit_once('-') else {
        return;
    };
    let mut refs = vec![format!("{parent}(1)")];
    if parent != "dbkeeper" {
        refs.push("dbkeeper(1)".into());
    }
    roff.control("SH", ["SEE ALSO"])
        .text([roman(refs.join(", "))]);
}
