//! The process's CPU time, from /proc (Linux); `None` elsewhere.

/// Clock ticks per second of /proc's CPU times (`USER_HZ`, 100 on Linux
/// whatever the kernel's own tick rate).
const USER_HZ: f64 = 100.0;

/// CPU seconds this process has used so far, all threads, user and system.
pub fn cpu_secs() -> Option<f64> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// `utime + stime` of a `/proc/<pid>/stat` line. The command name (field
/// 2) is in parentheses and may hold spaces or parentheses itself, so the
/// fields are counted from the last `)`: `utime` and `stime` are fields
/// 14 and 15, the 12th and 13th after it.
fn parse_stat(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_ticks_are_summed_after_the_command_name() {
        let stat = "4242 (meshchat (sim) x) R 1 4242 4242 0 -1 4194304 900 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat(stat), Some(3.25));
        assert_eq!(parse_stat("4242 (x) R 1"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn this_process_can_read_its_own() {
        assert!(cpu_secs().is_some());
    }
}
