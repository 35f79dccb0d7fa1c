/**
 * The trainer service. For now it only starts a gRPC server that answers the standard health service
 * (grpc.health.v1.Health). The later issue adds the training loop and {@code memgen.v1.TrainerAdmin}: it
 * consumes Trajectory and Feedback records from Kafka (memgen.trajectories, memgen.feedback; bad records to
 * *.dlq), trains the weaver first (SFT, then GRPO with the trigger inactive) and then the trigger (RL with the
 * reward-adaptive penalty) against the frozen base, stores each adapter version with its parent version, base
 * fingerprint, sha256 and the input offsets it was trained on, and announces it on the compacted
 * memgen.adapters topic so the weaver and trigger services swap it in; TrainerAdmin reports status, publishes
 * and rolls back. memgen.v1.TrainerAdmin is deliberately not registered until then (no UNIMPLEMENTED stub).
 */
package dev.memgen.trainer;
