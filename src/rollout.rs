//! How steps `on` a group spread over its hosts: the batches (canary first, from `[rollout]
//! serial`), the failure budget over the whole run (`max_fail`), and how many hosts run at once.

use crate::plan::{Plan, PlannedStep};
use crate::runbook::model::{Amount, RollbackScope, RolloutDef};

/// Consecutive steps `on` the same group: each batch of hosts runs all of them before the next
/// batch starts (a rolling deploy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub group: String,
    /// Indices into the plan's steps.
    pub steps: Vec<usize>,
    pub hosts: Vec<String>,
}

/// The blocks of a plan, in order; steps left out of this environment neither join nor split one.
pub fn blocks(steps: &[PlannedStep]) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut open = false;
    for (i, step) in steps.iter().enumerate() {
        if step.excluded.is_some() {
            continue;
        }
        let Some(on) = &step.on else {
            open = false;
            continue;
        };
        match out.last_mut() {
            Some(block) if open && block.group == on.group => block.steps.push(i),
            _ => out.push(Block {
                group: on.group.clone(),
                steps: vec![i],
                hosts: on.hosts.iter().map(|h| h.host.clone()).collect(),
            }),
        }
        open = true;
    }
    out
}

/// Every host some step runs on, each once, in the order they first appear.
pub fn all_hosts(blocks: &[Block]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for host in blocks.iter().flat_map(|b| b.hosts.iter()) {
        if !out.contains(&host.as_str()) {
            out.push(host);
        }
    }
    out
}

/// What `plan` shows about hosts: the rollout, then each block with its batches.
pub fn plan_lines(plan: &Plan) -> Vec<String> {
    let blocks = blocks(&plan.steps);
    if blocks.is_empty() {
        return Vec::new();
    }
    let total = all_hosts(&blocks).len();
    let mut lines = vec![format!("rollout over {total} hosts: {}", plan.rollout.describe(total))];
    lines.push(match &plan.ssh.config {
        Some(config) => format!("ssh: ssh -F {}", config.display()),
        None => "ssh: the user's own ssh configuration, agent and known_hosts".to_string(),
    });
    for block in &blocks {
        let numbers: Vec<usize> = block.steps.iter().map(|i| plan.steps[*i].number).collect();
        let steps = match numbers.as_slice() {
            [one] => format!("step {one}"),
            [first, .., last] => format!("steps {first}-{last}"),
            [] => continue,
        };
        lines.push(format!("  {steps} on {} ({} hosts):", block.group, block.hosts.len()));
        for (n, batch) in plan.rollout.batches(&block.hosts).iter().enumerate() {
            lines.push(format!("    batch {}: {}", n + 1, batch.join(", ")));
        }
    }
    lines
}

/// `[rollout]` made concrete for the hosts of one run.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub serial: Vec<Amount>,
    pub max_fail: Amount,
    pub concurrency: usize,
    pub rollback: RollbackScope,
}

impl From<&RolloutDef> for Rollout {
    fn from(def: &RolloutDef) -> Self {
        Rollout {
            serial: def.serial.clone(),
            max_fail: def.max_fail,
            concurrency: def.concurrency.max(1),
            rollback: def.rollback,
        }
    }
}

impl Rollout {
    /// The sizes of the batches `total` hosts are cut into: each `serial` entry in turn (a
    /// share of the total, rounded down, at least 1), the last one repeated until every host has
    /// had its turn.
    pub fn batch_sizes(&self, total: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut left = total;
        let mut i = 0;
        while left > 0 {
            let entry = self.serial[i.min(self.serial.len() - 1)];
            let size = entry.of(total).max(1).min(left);
            sizes.push(size);
            left -= size;
            i += 1;
        }
        sizes
    }

    /// `hosts` cut into batches, in order.
    pub fn batches<'h, T>(&self, hosts: &'h [T]) -> Vec<&'h [T]> {
        let mut out = Vec::new();
        let mut rest = hosts;
        for size in self.batch_sizes(hosts.len()) {
            let (batch, tail) = rest.split_at(size);
            out.push(batch);
            rest = tail;
        }
        out
    }

    /// How many of `total` hosts may fail over the whole run before no new host starts.
    pub fn budget(&self, total: usize) -> usize {
        self.max_fail.of(total)
    }

    /// One line for `plan`: the batches and the budget.
    pub fn describe(&self, total: usize) -> String {
        let sizes: Vec<String> = self.batch_sizes(total).iter().map(|n| n.to_string()).collect();
        let budget = self.budget(total);
        let failures = match budget {
            0 => "no host may fail".to_string(),
            1 => "1 host may fail".to_string(),
            n => format!("{n} hosts may fail"),
        };
        let scope = match self.rollback {
            RollbackScope::All => "every host the run touched",
            RollbackScope::Failed => "only the failed hosts",
        };
        format!(
            "batches of {} (serial {}); {failures} over the run (max_fail {}); {} at once; a rollback undoes {scope}",
            sizes.join(", "),
            self.serial.iter().map(|a| a.describe()).collect::<Vec<_>>().join(", "),
            self.max_fail.describe(),
            self.concurrency,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(serial: Vec<Amount>, max_fail: Amount) -> Rollout {
        Rollout { serial, max_fail, concurrency: 10, rollback: RollbackScope::All }
    }

    #[test]
    fn canary_then_shares_then_the_last_size_repeats() {
        let r = rollout(
            vec![Amount::Count(1), Amount::Percent(50), Amount::Percent(100)],
            Amount::Count(0),
        );
        assert_eq!(r.batch_sizes(5), vec![1, 2, 2]);
        assert_eq!(r.batch_sizes(1), vec![1]);
        assert_eq!(r.batch_sizes(0), Vec::<usize>::new());
        let r = rollout(vec![Amount::Count(2)], Amount::Count(0));
        assert_eq!(r.batch_sizes(5), vec![2, 2, 1]);
        let r = rollout(vec![Amount::Percent(1)], Amount::Count(0));
        assert_eq!(r.batch_sizes(3), vec![1, 1, 1], "a share rounds down but is at least 1");
        let hosts = ["a", "b", "c", "d", "e"];
        let r = rollout(vec![Amount::Count(1), Amount::Percent(50)], Amount::Count(0));
        assert_eq!(r.batches(&hosts), vec![&hosts[..1], &hosts[1..3], &hosts[3..5]]);
    }

    #[test]
    fn the_budget_is_a_count_or_a_share_of_all_hosts() {
        assert_eq!(rollout(vec![Amount::Count(1)], Amount::Count(2)).budget(20), 2);
        assert_eq!(rollout(vec![Amount::Count(1)], Amount::Percent(10)).budget(20), 2);
        assert_eq!(rollout(vec![Amount::Count(1)], Amount::Percent(10)).budget(5), 0);
    }
}
