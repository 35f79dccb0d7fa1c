/**
 * The reasoner service: the frozen base LM of MemGen behind {@code memgen.v1.Reasoner/Generate}, and the intake of
 * late rewards for what it generated.
 *
 * <p>{@link dev.memgen.reasoner.ReasonerModel} loads the checkpoint named by {@code memgen.model.dir} once at
 * startup; {@link dev.memgen.reasoner.GenerateRequestMapper} turns a request into a validated
 * {@link dev.memgen.model.generate.Generator.Request} (bad input becomes a gRPC status naming the field);
 * {@link dev.memgen.reasoner.ReasonerGrpcService} runs the model's generate loop on a worker thread and streams
 * one {@code TokenDelta} per token (with a {@code MemoryEvent} per latent insertion when traced), then
 * {@code Finished}. {@link dev.memgen.reasoner.ReasonerMemoryConfig} gives the loop its latent memory: embedded
 * (the weaver and trigger on this process's base weights) or remote (weaver-service and trigger-service over gRPC,
 * with deadlines); when memory is off, absent or failing, generation goes on with the bare base and
 * {@code Finished.memory_skipped} says where and why.
 *
 * <p>The experience log: {@link dev.memgen.reasoner.ExperienceRecorder} owns the service's one spooled Kafka
 * publisher; every finished generation becomes a {@code Trajectory} on it. Rewards that arrive later come in through
 * {@link dev.memgen.reasoner.FeedbackIntake} (validation and the {@code Feedback} record, in one place), served as
 * {@code memgen.v1.FeedbackIntake/Submit} by {@link dev.memgen.reasoner.FeedbackGrpcService} and as
 * {@code POST /v1/feedback} by {@link dev.memgen.reasoner.FeedbackResource}.
 */
package dev.memgen.reasoner;
