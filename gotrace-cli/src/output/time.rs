//! Wall-clock time as bcc prints it (`strftime("%H:%M:%S")`, local time).

/// The current local time as `HH:MM:SS`.
pub fn hms_now() -> String {
    // SAFETY: time/localtime_r only write the local structs they are given.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return String::from("??:??:??");
        }
        format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
    }
}
