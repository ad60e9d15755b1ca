fn main() {
    afl::fuzz!(|data: &[u8]| twistor_fuzz::int_n::check(data));
}
