fn main() {
    afl::fuzz!(|data: &[u8]| twistor_fuzz::chat_command_check::check(data));
}
