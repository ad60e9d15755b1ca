fn main() {
    afl::fuzz!(|data: &[u8]| twistor_fuzz::netstring::check(data));
}
