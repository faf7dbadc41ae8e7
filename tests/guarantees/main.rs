//! The integration tests, one module per guarantee, in one test binary.
//!
//! Each file here is named after the guarantee it proves. They share one
//! binary because each test binary links the whole crate: 35 binaries took
//! about 1 GB under `target/` and most of the suite's link time. Two tests
//! keep a binary of their own, beside this folder, because they need the
//! process to themselves: one counts the process's threads, the other sets
//! an in-process failpoint that every pipeline in the process would hit.

#[path = "../common/binary.rs"]
mod binary;
#[path = "../common/mod.rs"]
mod common;
#[path = "../common/dedup.rs"]
mod mixed;
#[path = "../common/nats.rs"]
mod nats;
#[path = "../common/parquet.rs"]
mod parquet;

mod a_closed_stderr_or_a_dead_coordinator_never_hangs_the_run;
mod a_damaged_or_foreign_checkpoint_is_refused;
mod a_damaged_or_foreign_dedup_pass_file_is_refused;
mod a_default_run_is_quiet;
mod a_directory_is_read_as_records_when_every_file_is_a_record_file;
mod a_distributed_run_gives_the_outputs_of_a_single_process_run;
mod a_distributed_run_interrupted_and_resumed_gives_the_uninterrupted_outputs;
mod a_folder_holds_the_outputs_of_one_run_only;
mod a_killed_runs_temporary_files_are_removed_by_the_next_run;
mod a_parquet_file_that_cannot_be_read_is_refused_naming_it;
mod a_poison_batch_has_its_records_rejected_and_the_run_ends;
mod a_run_that_will_not_fit_on_the_disk_exits_74_with_no_output;
mod a_second_run_into_the_same_output_folder_is_refused;
mod a_stuck_drain_ends_at_its_deadline_with_exit_70;
mod an_output_folder_inside_an_input_directory_is_not_read_as_input;
mod arbitrary_input_never_panics_the_parser_and_lines_are_conserved;
mod dedup_a_stop_or_a_changed_input_ends_the_run_without_output;
mod dedup_accuracy;
mod dedup_against_an_index_removes_what_one_run_over_both_would;
mod dedup_banding_reaches_the_candidate_probability_target;
mod dedup_candidates_keep_the_s_curve_promise_on_chains;
mod dedup_exact_short_empty_and_non_ascii_records_follow_the_rules;
mod dedup_identical_records_cost_one_candidate_pair_each;
mod dedup_json_lines_records_are_kept_byte_for_byte;
mod dedup_outputs_are_identical_for_any_workers_window_batch;
mod dedup_outputs_are_the_same_for_every_memory_budget;
mod dedup_outputs_do_not_depend_on_how_the_input_is_stored;
mod dedup_rejected_records_are_listed_once_and_never_kept;
mod dedup_resume_gives_the_result_of_an_uninterrupted_run;
mod every_record_is_integrated_or_rejected;
mod every_signal_leaves_a_summary_and_a_known_exit_code;
mod exit_codes_follow_sysexits;
mod generate_writes_the_demo_corpus_deterministically;
mod hostile_input_never_crashes_hangs_or_exhausts_memory;
mod in_flight_and_integrator_backlog_stay_bounded;
mod integrator_failure_stops_the_run_with_exit_70;
mod invalid_or_absurd_parameters_exit_2_before_any_work;
mod io_faults_exit_74_with_a_message_and_no_half_written_output;
mod malformed_records_are_rejected_with_their_location;
mod output_is_identical_for_any_workers_window_batch;
mod outputs_are_committed_as_one_set_or_not_at_all;
mod randomized_faults_never_lose_a_record;
mod record_ids_come_out_exactly_as_they_came_in;
mod resume_gives_the_result_of_an_uninterrupted_run;
mod runs_sharing_batch_buffers_reuse_them;
mod sigint_drains_and_exits_130;
mod stall_report_names_what_is_stuck;
mod step1_panic_rejects_the_record_not_the_thread;
mod stop_drains_every_mailbox;
mod temporaries_are_removed_on_every_exit_path;
mod the_examples_run_and_account_for_every_record;
mod the_modules_import_one_way;
mod the_protocol_loses_nothing_where_naive_shutdown_does;
mod the_same_records_give_the_same_clusters_however_they_are_packaged;
mod wet_conversion_records_are_documents_and_other_records_are_counted;
mod writing_to_a_closed_pipe_ends_quietly;
