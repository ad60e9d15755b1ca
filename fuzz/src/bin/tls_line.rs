fn main() {
    afl::fuzz!(|data: &[u8]| twistor_fuzz::tls_line::check(data));
}
