fn main() {
    afl::fuzz!(|data: &[u8]| twistor_fuzz::upload_header_check::check(data));
}
