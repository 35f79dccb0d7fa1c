/**
 * The trainer service: {@link dev.memgen.trainer.ContinualTrainer} (the memgen-trainer library) consumes Trajectory
 * and Feedback records from Kafka (memgen.trajectories, memgen.feedback; bad records to *.dlq) in windows, trains the
 * weaver against the frozen base (SFT on rewarded trajectories and rewarded re-rollouts, optionally GRPO) and then the
 * trigger with the weaver frozen, scored by a {@link dev.memgen.trainer.Verifier}, gates each candidate on a held-out
 * set, stores it with its parent version, base fingerprint, metrics and the input offsets consumed, and announces it
 * on the compacted memgen.adapters topic so the weaver and trigger services swap it in.
 * {@link dev.memgen.trainer.TrainerLoop} runs it inside Quarkus; {@link dev.memgen.trainer.TrainerAdminService}
 * serves memgen.v1.TrainerAdmin (status, publish, rollback).
 */
package dev.memgen.trainer;
