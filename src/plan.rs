//! A runbook made concrete for one run: the environment chosen, every variable resolved, every
//! command rendered. The engine only ever sees a `Plan`, never a raw runbook.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use crate::runbook::model::*;
use crate::runbook::parse::regex_of;
use crate::runbook::shell::{self, Fill};
use crate::runbook::template::{substitute, substitute_each};
use crate::secret::{self, MASK, Masker, redact};

/// What one step (or one rollback) does, fully rendered. This is what the journal records, so a
/// rollback of a past run uses the commands of that time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Work {
    Shell {
        run: String,
        cwd: Option<String>,
        timeout_ms: Option<u64>,
    },
    Manual {
        instructions: String,
    },
    Flush {
        redis: String,
        patterns: Vec<String>,
        max_keys: Option<u64>,
        backup: bool,
        batch: usize,
        /// Where the deleted keys are dumped first; the rollback restores from it.
        backup_file: String,
    },
    Restore {
        redis: String,
        backup_file: String,
        /// The flush's patterns: keys matching them that are not in the backup were written
        /// after the flush and are deleted. Absent in journals of older versions.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        patterns: Vec<String>,
    },
    Watch {
        file: Option<String>,
        command: Option<String>,
        for_ms: u64,
        fail_on: Vec<String>,
        max: u64,
        until: Option<String>,
        /// The file may not exist yet: wait for it (within `for_ms`) instead of failing at once.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        wait_for_file: bool,
    },
    Measure {
        run: Option<String>,
        capture: Vec<String>,
        http: Option<String>,
        requests: u32,
        redis: Option<String>,
        pattern: Option<String>,
        /// For a `run` source: where and how long, as for shell steps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
        /// Conditions on the figures that fail the step (`error_rate > 0.01`), as written.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fail_if: Vec<String>,
    },
}

impl Work {
    /// One line saying what this does, for the plan, prompts and the report.
    pub fn summary(&self) -> String {
        match self {
            Work::Shell { run, .. } => run.clone(),
            Work::Manual { instructions } => format!("(by hand) {instructions}"),
            Work::Flush { redis, patterns, backup, .. } => format!(
                "flush keys {} on {}{}",
                patterns.join(", "),
                redact(redis),
                if *backup { ", backed up first" } else { ", NO backup" }
            ),
            Work::Restore { redis, backup_file, patterns } => format!(
                "restore keys from {backup_file} to {}{}",
                redact(redis),
                if patterns.is_empty() {
                    String::new()
                } else {
                    format!(", deleting keys matching {} written since", patterns.join(", "))
                }
            ),
            Work::Watch { file, command, for_ms, fail_on, wait_for_file, .. } => format!(
                "watch {}{} for {} failing on {}",
                file.as_deref().or(command.as_deref()).unwrap_or("?"),
                if *wait_for_file { " (once it appears)" } else { "" },
                crate::runbook::duration::human(Duration::from_millis(*for_ms)),
                fail_on.join(" | ")
            ),
            Work::Measure { run, http, redis, .. } => format!(
                "measure {}",
                http.as_deref()
                    .map(String::from)
                    .or_else(|| redis.as_deref().map(|r| redact(r).into_owned()))
                    .or_else(|| run.clone())
                    .unwrap_or_default()
            ),
        }
    }
}

/// One step, ready to run.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub number: usize,
    pub id: Option<String>,
    pub title: String,
    pub kind: Kind,
    pub owner: String,
    pub work: Work,
    pub rollback: Option<Work>,
    pub verify_rollback: Option<Work>,
    pub expect: Expect,
    pub irreversible: Option<String>,
    pub retries: u32,
    /// Set when `only_env` leaves this step out of the chosen environment.
    pub excluded: Option<String>,
    /// `on = "GROUP"`: the step runs on each of these hosts, not here. `work` and `rollback`
    /// above keep `{{host}}` as written (for display); each host has its own rendering.
    pub on: Option<OnHosts>,
}

/// The hosts a step runs on, each with the step rendered for it (`{{host}}` filled in).
#[derive(Debug, Clone)]
pub struct OnHosts {
    pub group: String,
    pub hosts: Vec<HostWork>,
}

/// One step as it runs on one host.
#[derive(Debug, Clone)]
pub struct HostWork {
    pub host: String,
    pub work: Work,
    pub rollback: Option<Work>,
    pub verify_rollback: Option<Work>,
}

impl PlannedStep {
    /// Whether running this step may leave something to undo (a check or a measure does not).
    pub fn leaves_a_change(&self) -> bool {
        self.rollback.is_some() || self.irreversible.is_some() || self.kind.changes_things()
    }

    pub fn expect_text(&self) -> String {
        let mut parts = Vec::new();
        if let Work::Shell { .. } = self.work {
            parts.push(format!("exit {}", self.expect.exit));
        }
        if let Some(m) = &self.expect.stdout {
            parts.push(m.describe());
        }
        if let Some(note) = &self.expect.note {
            parts.push(note.clone());
        }
        let captured: Vec<&str> =
            self.expect.capture.iter().flat_map(|re| re.capture_names().flatten()).collect();
        if !captured.is_empty() {
            parts.push(format!("captures {}", captured.join(", ")));
        }
        if let Work::Measure { fail_if, .. } = &self.work
            && !fail_if.is_empty()
        {
            parts.push(format!("no fail_if true ({})", fail_if.join("; ")));
        }
        parts.join("; ")
    }
}

#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub path: PathBuf,
    pub hash: String,
    pub env: Option<String>,
    pub run_id: String,
    pub run_dir: PathBuf,
    pub operator: String,
    /// Non-secret variables: name, value exactly as used.
    pub vars: BTreeMap<String, String>,
    /// The names of the secret variables (their values are in `step_env` only).
    pub secrets: Vec<String>,
    /// Handed to every step's commands: the secrets (`RUNBOOK_SECRET_NAME`) and `RUNBOOK_RUN_ID`,
    /// by which `resume` finds a step's processes that outlived the engine.
    pub step_env: Vec<(String, String)>,
    pub masker: Masker,
    pub steps: Vec<PlannedStep>,
    /// The Redis of `[lock]`, rendered (may hold a password: never print it unredacted).
    pub lock_redis: Option<String>,
    /// The Redis of `[store]`, rendered.
    pub store_redis: Option<String>,
    /// How hosts are reached (`[ssh]`, rendered) and how steps spread over them (`[rollout]`).
    pub ssh: crate::runner::ssh::SshOptions,
    pub rollout: crate::rollout::Rollout,
}

/// Asks the operator for a secret, given its label.
pub type AskSecret<'a> = &'a mut dyn FnMut(&str) -> Result<String>;

/// What the plan is built from, besides the runbook.
pub struct Context<'a> {
    pub env: Option<&'a str>,
    pub overrides: &'a [(String, String)],
    pub run_id: String,
    pub run_dir: PathBuf,
    pub operator: String,
    /// Asks the operator for `prompt` variables; `None` when nobody can be asked.
    pub ask_secret: Option<AskSecret<'a>>,
    /// For `plan`: secrets are not looked up, only shown as `***`.
    pub dry: bool,
}

/// A resolved variable.
#[derive(Debug, Clone)]
struct Value {
    text: String,
    secret: bool,
}

impl Plan {
    pub fn build(rb: &Runbook, ctx: Context<'_>) -> Result<Plan> {
        let env = choose_env(rb, ctx.env)?;
        let mut vars = Resolver::new(rb, env, &ctx)?;
        vars.dry = ctx.dry;
        let mut values = vars.resolve_all(ctx.ask_secret)?;
        check_secrets(rb, env, ctx.overrides, &mut values)?;
        // In a dry plan a secret's text is only `***`: nothing to hand on or mask.
        let secret_env: Vec<(String, String)> = values
            .iter()
            .filter(|(_, v)| v.secret && !ctx.dry)
            .map(|(k, v)| (secret_env_name(k), v.text.clone()))
            .collect();
        let masker = Masker::new(secret_env.iter().map(|(_, v)| v.clone()));
        let mut step_env = secret_env;
        step_env.push(("RUNBOOK_RUN_ID".into(), ctx.run_id.clone()));
        // Non-secret values verbatim: a resume needs them exactly. (A value holding a URL's
        // password is a secret, whatever the runbook says, so it is not among them.)
        let shown = values
            .iter()
            .filter(|(_, v)| !v.secret)
            .map(|(k, v)| (k.clone(), v.text.clone()))
            .collect();
        let secrets = values.iter().filter(|(_, v)| v.secret).map(|(k, _)| k.clone()).collect();
        check_defined(rb, env, &values)?;
        let ids: BTreeMap<String, usize> =
            rb.steps.iter().filter_map(|s| Some((s.id.clone()?, s.number))).collect();
        let shown_outputs = ctx.dry.then_some(&ids);
        let renderer = Renderer { values: &values, run_dir: &ctx.run_dir, shown_outputs };
        let steps: Vec<PlannedStep> =
            rb.steps.iter().map(|s| renderer.step(rb, s, env)).collect::<Result<_>>()?;
        refuse_flushing_everything(&steps, &step_env, ctx.dry)?;
        let ssh = renderer.ssh(&rb.ssh);
        let lock_redis = rb.lock_redis.as_ref().map(|t| renderer.concrete(t));
        let store_redis = rb.store_redis.as_ref().map(|t| renderer.concrete(t));
        Ok(Plan {
            name: rb.name.clone(),
            path: rb.path.clone(),
            hash: rb.hash.clone(),
            env: env.map(String::from),
            run_id: ctx.run_id,
            run_dir: ctx.run_dir,
            operator: ctx.operator,
            vars: shown,
            secrets,
            step_env,
            masker,
            steps,
            lock_redis,
            store_redis,
            ssh,
            rollout: crate::rollout::Rollout::from(&rb.rollout),
        })
    }

    /// Find a step by number or id.
    pub fn step_index(&self, wanted: &str) -> Result<usize> {
        find_step(self.steps.iter().map(|s| (s.number, s.id.as_deref())), wanted)
    }
}

/// A step named by its number or its id, as accepted wherever a step is asked for.
pub fn find_step<'a>(
    steps: impl Iterator<Item = (usize, Option<&'a str>)> + Clone,
    wanted: &str,
) -> Result<usize> {
    let count = steps.clone().count();
    if let Ok(n) = wanted.parse::<usize>() {
        if let Some(i) = steps.clone().position(|(num, _)| num == n) {
            return Ok(i);
        }
        bail!("there is no step {n}; expected a number from 1 to {count} or a step id");
    }
    if let Some(i) = steps.clone().position(|(_, id)| id == Some(wanted)) {
        return Ok(i);
    }
    let ids: Vec<&str> = steps.filter_map(|(_, id)| id).collect();
    bail!(
        "no step has id {wanted:?}; expected a number from 1 to {count}{}",
        if ids.is_empty() { String::new() } else { format!(" or one of: {}", ids.join(", ")) }
    )
}

/// A variable declared only in another environment's `[env.NAME.vars]` is unknown here: say so
/// before anything runs, rather than run a command with `{{name}}` left in it.
fn check_defined(rb: &Runbook, env: Option<&str>, values: &BTreeMap<String, Value>) -> Result<()> {
    let in_env = |s: &Step| match (&s.only_env, env) {
        (Some(only), Some(e)) => only.iter().any(|o| o.text == e),
        (Some(_), None) => false,
        (None, _) => true,
    };
    let steps = rb.steps.iter().filter(|s| in_env(s));
    let mut templates: Vec<(String, &Template)> = steps
        .flat_map(|s| {
            crate::runbook::validate::step_templates(s)
                .into_iter()
                .map(move |t| (format!("step {}", s.number), t))
        })
        .collect();
    templates.extend(rb.lock_redis.iter().map(|t| ("[lock]".to_string(), t)));
    templates.extend(rb.store_redis.iter().map(|t| ("[store]".to_string(), t)));
    for (place, t) in templates {
        let Ok(found) = crate::runbook::template::placeholders(&t.text) else { continue };
        // `{{host}}` is filled in per host (`check` allows it only in steps `on` a group).
        let known = |p: &&crate::runbook::template::Placeholder<'_>| {
            values.contains_key(p.name)
                || p.name == "host"
                || crate::runbook::outputs::parse_ref(p.name).is_some()
        };
        if let Some(p) = found.iter().find(|p| !known(p)) {
            let here = env.map_or("without --env".to_string(), |e| format!("in environment {e}"));
            let defined: Vec<String> = rb
                .envs
                .iter()
                .filter(|(_, d)| d.vars.iter().any(|v| v.name == p.name))
                .map(|(name, _)| format!("[env.{name}.vars]"))
                .collect();
            bail!(
                "{place} uses `{}`, which is not defined {here} (only in {}); define it in [vars]{} (nothing was run)",
                p.name,
                defined.join(", "),
                env.map_or(String::new(), |e| format!(" or [env.{e}.vars]"))
            );
        }
    }
    Ok(())
}

/// Secrets, before anything runs: a value holding a URL with a password is a secret whether
/// declared so or not (it is shown as `***` and recorded as a reference); a secret too short to
/// mask safely is refused, naming where it came from; and no other value may hold what reads as
/// a secret reference, which the steps would fill in.
fn check_secrets(
    rb: &Runbook,
    env: Option<&str>,
    overrides: &[(String, String)],
    values: &mut BTreeMap<String, Value>,
) -> Result<()> {
    for (name, v) in values.iter_mut() {
        if !v.secret && secret::holds_url_password(&v.text) {
            v.secret = true;
        }
        // In a dry plan a secret is only `***`: it was never read, so there is nothing to measure.
        if v.secret && v.text != MASK && secret::too_short(&v.text) {
            bail!(
                "variable `{name}` is secret and its value ({}) is {} characters long; expected at least {}: {} (nothing was run)",
                source_of(rb, env, overrides, name),
                v.text.chars().count(),
                secret::MIN_SECRET,
                secret::SHORT_REASON
            );
        }
        if !v.secret && secret::has_reference(&v.text) {
            bail!(
                "variable `{name}` holds `${{RUNBOOK_SECRET_`, which is how runbook refers to secrets in what it records; expected a value without it (to use a secret, write its {{{{name}}}}) (nothing was run)"
            );
        }
    }
    Ok(())
}

/// A flush pattern that matches every key, however it came to be (`--var pat=*`, `**`, `*?*`), is
/// refused before anything runs: `check` can only see the file's text. For `plan` a secret reads
/// `***`, which says nothing about its value: the run checks it again.
fn refuse_flushing_everything(
    steps: &[PlannedStep],
    env: &[(String, String)],
    dry: bool,
) -> Result<()> {
    for step in steps.iter().filter(|s| s.excluded.is_none()) {
        let Work::Flush { patterns, .. } = &step.work else { continue };
        for (recorded, used) in patterns.iter().map(|p| (p, secret::expand(p, env))) {
            let used = used?;
            if dry && used.contains(MASK) {
                continue;
            }
            if crate::steps::flush::matches_every_key(&used) {
                bail!(
                    "step {}: the flush pattern {recorded:?} (used as {:?}) matches every key; expected a pattern that names the keys that matter, such as \"page:upload:*\"; clearing every key is FLUSHDB's job, and runbook never does it (nothing was run)",
                    step.number,
                    crate::secret::Masker::new(env.iter().map(|(_, v)| v.clone())).mask(&used)
                );
            }
        }
    }
    Ok(())
}

/// Where a variable's value came from, in words.
fn source_of(
    rb: &Runbook,
    env: Option<&str>,
    overrides: &[(String, String)],
    name: &str,
) -> String {
    if overrides.iter().any(|(k, _)| k == name) {
        return format!("from --var {name}=...");
    }
    let env_vars = env.and_then(|e| rb.envs.get(e)).map(|e| e.vars.iter());
    let def = env_vars.into_iter().flatten().chain(rb.vars.iter()).find(|v| v.name == name);
    match def.map(|d| &d.source) {
        Some(VarSource::FromEnv(var)) => format!("from the environment variable {var}"),
        Some(VarSource::FromFile(path)) => format!("from the file {path}"),
        Some(VarSource::Prompt(label)) => format!("typed at the prompt {label:?}"),
        _ => "written in the runbook".to_string(),
    }
}

fn secret_env_name(var: &str) -> String {
    secret::env_name(var)
}

fn choose_env<'r>(rb: &'r Runbook, wanted: Option<&str>) -> Result<Option<&'r str>> {
    let names: Vec<&str> = rb.envs.keys().map(String::as_str).collect();
    match wanted {
        None if names.is_empty() => Ok(None),
        None => bail!(
            "{} defines environments ({}); choose one with --env (nothing was run)",
            rb.path.display(),
            names.join(", ")
        ),
        Some(e) => match rb.envs.get_key_value(e) {
            Some((name, _)) => Ok(Some(name.as_str())),
            None if names.is_empty() => {
                bail!("--env {e}: {} defines no environments ([env.NAME])", rb.path.display())
            }
            None => bail!("unknown environment {e:?}; expected one of: {}", names.join(", ")),
        },
    }
}

/// Resolves variables: built-ins, then [vars], then [env.NAME.vars], then --var. Only values
/// written in the runbook are filled; a value given with --var, read from the environment or a
/// file is taken as it is (`{{x}}` in it stays `{{x}}`).
struct Resolver<'a> {
    defs: BTreeMap<String, (VarSource, bool)>,
    /// Values given with --var, by name.
    given: BTreeMap<String, String>,
    done: BTreeMap<String, Value>,
    runbook_dir: &'a Path,
    dry: bool,
}

impl<'a> Resolver<'a> {
    fn new(rb: &'a Runbook, env: Option<&str>, ctx: &Context<'_>) -> Result<Resolver<'a>> {
        let mut defs = BTreeMap::new();
        let env_vars = env.and_then(|e| rb.envs.get(e)).map(|e| e.vars.iter());
        for v in rb.vars.iter().chain(env_vars.into_iter().flatten()) {
            defs.insert(v.name.clone(), (v.source.clone(), v.secret));
        }
        let mut given = BTreeMap::new();
        for (k, v) in ctx.overrides {
            if !defs.contains_key(k) {
                bail!(
                    "--var {k}=...: {} declares no variable `{k}`; declare it in [vars]",
                    rb.path.display()
                )
            }
            given.insert(k.clone(), v.clone());
        }
        let runbook_dir =
            rb.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut done = BTreeMap::new();
        let dir = std::fs::canonicalize(runbook_dir).unwrap_or_else(|_| runbook_dir.to_path_buf());
        let builtins = [
            ("run_id", ctx.run_id.clone()),
            ("run_dir", ctx.run_dir.display().to_string()),
            ("runbook_dir", dir.display().to_string()),
            ("env", env.unwrap_or("").to_string()),
            ("operator", ctx.operator.clone()),
            ("now", chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ];
        for (k, v) in builtins {
            done.insert(k.to_string(), Value { text: v, secret: false });
        }
        Ok(Resolver { defs, given, done, runbook_dir, dry: false })
    }

    fn resolve_all(&mut self, mut ask: Option<AskSecret<'_>>) -> Result<BTreeMap<String, Value>> {
        let names: Vec<String> = self.defs.keys().cloned().collect();
        for name in names {
            self.resolve(&name, &mut Vec::new(), &mut ask)?;
        }
        Ok(std::mem::take(&mut self.done))
    }

    fn resolve(
        &mut self,
        name: &str,
        stack: &mut Vec<String>,
        ask: &mut Option<AskSecret<'_>>,
    ) -> Result<Value> {
        if let Some(v) = self.done.get(name) {
            return Ok(v.clone());
        }
        if stack.iter().any(|s| s == name) {
            bail!("variables refer to each other in a loop: {} -> {name}", stack.join(" -> "));
        }
        let (source, mut secret) = self.defs.get(name).cloned().with_context(|| {
            let user = stack.last().map_or(String::new(), |u| format!(" (used by `{u}`)"));
            format!("variable `{name}`{user} is not defined in this environment; define it in [vars] or in this environment's [env.NAME.vars] (nothing was run)")
        })?;
        if secret && self.dry {
            // Recorded like any value, so the check that every used name is defined finds it; still
            // a secret, so a command shows its reference exactly as bash will get it.
            let value = Value { text: MASK.to_string(), secret: true };
            self.done.insert(name.to_string(), value.clone());
            return Ok(value);
        }
        let text = match source {
            _ if self.given.contains_key(name) => self.given[name].clone(),
            VarSource::Value(t) => {
                stack.push(name.to_string());
                let filled = self.fill(&t, stack, ask);
                stack.pop();
                let (text, tainted) = filled?;
                // A value built from a secret is a secret too.
                secret |= tainted;
                text
            }
            // `plan` shows what it can and runs nothing: a missing source is shown, not fatal.
            VarSource::FromEnv(var) if self.dry && std::env::var_os(&var).is_none() => {
                format!("<${var} is not set>")
            }
            VarSource::Prompt(label) if self.dry => format!("<asked at run time: {label}>"),
            VarSource::FromEnv(var) => std::env::var(&var).with_context(|| {
                format!("variable `{name}` comes from the environment variable {var}, which is not set; set it and run again (nothing was run)")
            })?,
            VarSource::FromFile(path) => {
                let path = self.runbook_dir.join(path);
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!("variable `{name}` comes from {}, which cannot be read (nothing was run)", path.display())
                })?;
                text.trim_end_matches(['\n', '\r']).to_string()
            }
            VarSource::Prompt(label) => match ask.as_mut() {
                Some(ask) => ask(&label)?,
                None => bail!(
                    "variable `{name}` is asked at a prompt ({label:?}) and there is no terminal; run on a terminal or pass --var {name}=... (nothing was run)"
                ),
            },
        };
        let value = Value { text, secret };
        self.done.insert(name.to_string(), value.clone());
        Ok(value)
    }
}

impl Resolver<'_> {
    /// Fill a value's placeholders; says whether any of them was a secret.
    fn fill(
        &mut self,
        template: &str,
        stack: &mut Vec<String>,
        ask: &mut Option<AskSecret<'_>>,
    ) -> Result<(String, bool)> {
        let mut tainted = false;
        let mut failed = None;
        let text = substitute(template, |n| match self.resolve(n, stack, ask) {
            Ok(v) => {
                tainted |= v.secret;
                Some(v.text)
            }
            Err(e) => {
                failed.get_or_insert(e);
                None
            }
        });
        match failed {
            Some(e) => Err(e),
            None => Ok((text, tainted)),
        }
    }
}

struct Renderer<'a> {
    values: &'a BTreeMap<String, Value>,
    run_dir: &'a Path,
    /// For `plan` (nothing runs): step ids and numbers, so a step output is shown as what it
    /// will be, `<release from step 2>`, rather than as the reference a command gets.
    shown_outputs: Option<&'a BTreeMap<String, usize>>,
}

impl Renderer<'_> {
    /// For text that goes to bash: each value is written for where it sits in bash's quoting (see
    /// `runbook::shell`), so bash reads exactly the value, whatever it holds. A secret becomes a
    /// reference to its environment variable, so the value never appears on a command line
    /// (`ps`) or in the journal. `{{raw:name}}` splices the value as it is.
    fn shell(&self, t: &Template) -> Result<String, String> {
        shell::render(&t.text, |name| {
            if let Some((id, output)) = crate::runbook::outputs::parse_ref(name) {
                return Some(self.output(id, output));
            }
            self.values.get(name).map(|v| match v.secret {
                true => Fill::Secret(secret_env_name(name)),
                false => Fill::Value(v.text.clone()),
            })
        })
    }

    /// For text that is shown or compared as it is (a title, an expected text, instructions):
    /// a secret is shown as `***`, as it appears in masked output.
    fn text(&self, text: &str) -> String {
        substitute(text, |n| self.values.get(n).map(|v| shown(v).to_string()))
    }

    /// For a regular expression: each value is matched literally, unless it is `{{raw:name}}`.
    fn regex(&self, pattern: &str) -> String {
        substitute_each(pattern, |p| {
            let v = shown(self.values.get(p.name)?);
            Some(if p.raw { v.to_string() } else { regex::escape(v) })
        })
    }

    /// A regex, filled and compiled now so that a bad one stops the run before anything runs.
    fn checked_regex(&self, key: &str, t: &Template) -> Result<String, String> {
        let pattern = self.regex(&t.text);
        match regex::Regex::new(&pattern) {
            Ok(_) => Ok(pattern),
            Err(e) => {
                Err(format!("`{key}` is not a valid regex once filled in (/{pattern}/): {e}"))
            }
        }
    }

    fn expect(&self, e: &ExpectDef) -> Result<Expect, String> {
        let stdout = match &e.stdout {
            None => None,
            Some(t) => Some(match regex_of(&t.text) {
                Some(pattern) => {
                    let t = Template { text: pattern.to_string(), span: t.span.clone() };
                    let filled = self.checked_regex("expect.stdout", &t)?;
                    // Already compiled by checked_regex.
                    OutputMatch::Regex(regex::Regex::new(&filled).map_err(|e| e.to_string())?)
                }
                None => OutputMatch::Contains(self.text(&t.text)),
            }),
        };
        let note = e.note.as_ref().map(|t| self.text(&t.text));
        Ok(Expect { exit: e.exit, stdout, note, capture: e.capture.clone() })
    }

    /// A step output in a command: a reference to the variable that carries it; for `plan`,
    /// where it comes from.
    fn output(&self, id: &str, name: &str) -> Fill {
        match self.shown_outputs.and_then(|ids| ids.get(id)) {
            Some(number) => Fill::Value(format!("<{name} from step {number}>")),
            None => Fill::Secret(crate::runbook::outputs::env_name(id, name)),
        }
    }

    /// For values the program uses itself (a Redis URL, a pattern, a file to watch, a cwd): a
    /// secret becomes a reference too, so what is journalled is what a replay needs and holds no
    /// secret; the step fills references in at the moment of use (`secret::expand`).
    fn value(&self, t: &Template) -> String {
        substitute(&t.text, |n| {
            self.values.get(n).map(|v| if v.secret { secret::reference(n) } else { v.text.clone() })
        })
    }

    /// With the secrets' values in: for what is used at once and never recorded (the Redis of
    /// `[lock]` and `[store]`).
    fn concrete(&self, t: &Template) -> String {
        substitute(&t.text, |n| self.values.get(n).map(|v| v.text.clone()))
    }

    /// A step's work, rollback and verify_rollback, rendered.
    fn step_work(&self, s: &Step) -> Result<(Work, Option<Work>, Option<Work>), String> {
        let timeout_ms = s.timeout.map(millis);
        let cwd = s.cwd.as_ref().map(|c| self.value(c));
        let shell = |t: &Template| -> Result<Work, String> {
            Ok(Work::Shell { run: self.shell(t)?, cwd: cwd.clone(), timeout_ms })
        };
        let work = self.work(s, &shell)?;
        let rollback = match (&s.action, &s.rollback) {
            (_, Some(r)) => Some(shell(r)?),
            (Action::Flush(f), None) if f.backup => Some(Work::Restore {
                redis: self.value(&f.redis),
                backup_file: self.backup_file(s.number),
                patterns: f.patterns.iter().map(|p| self.value(p)).collect(),
            }),
            _ => None,
        };
        Ok((work, rollback, s.verify_rollback.as_ref().map(shell).transpose()?))
    }

    /// A step rendered; a value that cannot be used where it sits names the step.
    fn step(&self, rb: &Runbook, s: &Step, env: Option<&str>) -> Result<PlannedStep> {
        let in_step = |why: String| anyhow::anyhow!("step {}: {why} (nothing was run)", s.number);
        self.step_or(rb, s, env).map_err(in_step)
    }

    fn step_or(&self, rb: &Runbook, s: &Step, env: Option<&str>) -> Result<PlannedStep, String> {
        let (work, rollback, verify_rollback) = self.step_work(s)?;
        let excluded = match (&s.only_env, env) {
            (Some(only), e) if !only.iter().any(|o| Some(o.text.as_str()) == e) => {
                let names: Vec<&str> = only.iter().map(|o| o.text.as_str()).collect();
                Some(format!("only for {}", names.join(", ")))
            }
            _ => None,
        };
        Ok(PlannedStep {
            number: s.number,
            id: s.id.clone(),
            title: self.text(&s.title.text),
            kind: s.kind,
            owner: s
                .owner
                .clone()
                .or_else(|| rb.owner.clone())
                .unwrap_or_else(|| "unassigned".into()),
            work,
            rollback,
            verify_rollback,
            expect: self.expect(&s.expect)?,
            irreversible: s.irreversible.clone(),
            retries: s.retries,
            on: s.on.as_ref().map(|on| self.on_hosts(rb, s, env, &on.text)).transpose()?,
            excluded,
        })
    }

    /// The step rendered once per host of its group, with `{{host}}` set to that host.
    fn on_hosts(
        &self,
        rb: &Runbook,
        s: &Step,
        env: Option<&str>,
        group: &str,
    ) -> Result<OnHosts, String> {
        let names = env
            .and_then(|e| rb.envs.get(e))
            .and_then(|e| e.hosts.iter().find(|g| g.name.text == group))
            .map(|g| g.hosts.iter().map(|h| h.text.clone()).collect::<Vec<_>>())
            .unwrap_or_default();
        let hosts = names
            .into_iter()
            .map(|host| {
                let mut values = self.values.clone();
                values.insert("host".into(), Value { text: host.clone(), secret: false });
                let here = Renderer { values: &values, ..*self };
                let (work, rollback, verify_rollback) = here.step_work(s)?;
                Ok(HostWork { host, work, rollback, verify_rollback })
            })
            .collect::<Result<_, String>>()?;
        Ok(OnHosts { group: group.to_string(), hosts })
    }

    /// `[ssh]` made concrete: the config file's path rendered, the defaults filled in.
    fn ssh(&self, def: &SshDef) -> crate::runner::ssh::SshOptions {
        let defaults = crate::runner::ssh::SshOptions::default();
        crate::runner::ssh::SshOptions {
            config: def.config.as_ref().map(|t| PathBuf::from(self.concrete(t))),
            connect_timeout: def.connect_timeout.unwrap_or(defaults.connect_timeout),
            alive_interval: def.keepalive.unwrap_or(defaults.alive_interval),
            ..defaults
        }
    }

    fn backup_file(&self, step: usize) -> String {
        self.run_dir.join(format!("flush-step-{step:02}.backup")).display().to_string()
    }

    fn work(
        &self,
        s: &Step,
        shell: &dyn Fn(&Template) -> Result<Work, String>,
    ) -> Result<Work, String> {
        Ok(match &s.action {
            Action::Shell(t) => shell(t)?,
            Action::Manual(t) => Work::Manual { instructions: self.text(&t.text) },
            Action::Flush(f) => Work::Flush {
                redis: self.value(&f.redis),
                patterns: f.patterns.iter().map(|p| self.value(p)).collect(),
                max_keys: f.max_keys,
                backup: f.backup,
                batch: f.batch,
                backup_file: self.backup_file(s.number),
            },
            Action::Watch(w) => {
                let (file, command) = match &w.source {
                    WatchSourceDef::File(t) => (Some(self.value(t)), None),
                    WatchSourceDef::Command(t) => (None, Some(self.shell(t)?)),
                };
                let fail_on = w.fail_on.iter().map(|t| self.checked_regex("fail_on", t));
                let until = w.until.as_ref().map(|t| self.checked_regex("until", t));
                Work::Watch {
                    file,
                    command,
                    for_ms: millis(w.duration),
                    fail_on: fail_on.collect::<Result<_, _>>()?,
                    max: w.max,
                    until: until.transpose()?,
                    wait_for_file: w.wait_for_file,
                }
            }
            Action::Measure(m) => self.measure(m, s)?,
        })
    }

    fn measure(&self, m: &MeasureDef, s: &Step) -> Result<Work, String> {
        let fail_if: Vec<String> = s.fail_if.iter().map(|t| t.text.clone()).collect();
        let cwd = s.cwd.as_ref().map(|c| self.value(c));
        let timeout_ms = s.timeout.map(millis);
        let capture = |patterns: &[Template]| -> Result<Vec<String>, String> {
            patterns.iter().map(|t| self.checked_regex("capture", t)).collect()
        };
        Ok(match m {
            MeasureDef::Command { run, patterns } => Work::Measure {
                run: Some(self.shell(run)?),
                capture: capture(patterns)?,
                http: None,
                requests: 0,
                redis: None,
                pattern: None,
                cwd: cwd.clone(),
                timeout_ms,
                fail_if: fail_if.clone(),
            },
            MeasureDef::Http { url, requests, .. } => Work::Measure {
                run: None,
                capture: Vec::new(),
                http: Some(self.value(url)),
                requests: *requests,
                redis: None,
                pattern: None,
                cwd: cwd.clone(),
                timeout_ms,
                fail_if: fail_if.clone(),
            },
            MeasureDef::Redis { url, pattern } => Work::Measure {
                run: None,
                capture: Vec::new(),
                http: None,
                requests: 0,
                redis: Some(self.value(url)),
                pattern: pattern.as_ref().map(|p| self.value(p)),
                cwd: cwd.clone(),
                timeout_ms,
                fail_if: fail_if.clone(),
            },
        })
    }
}

/// A value as it may be shown: a secret as `***`.
fn shown(v: &Value) -> &str {
    if v.secret { MASK } else { &v.text }
}

/// Milliseconds, saturating: a duration too long for u64 is "forever", never a wrapped short one.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
