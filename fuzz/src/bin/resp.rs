fn main() {
    afl::fuzz!(|data: &[u8]| twistor_fuzz::resp_check::check(data));
}
