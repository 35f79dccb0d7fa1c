/**
 * The reasoner service: the frozen base LM of MemGen behind {@code memgen.v1.Reasoner/Generate}.
 *
 * <p>{@link dev.memgen.reasoner.ReasonerModel} loads the checkpoint named by {@code memgen.model.dir} once at
 * startup; {@link dev.memgen.reasoner.GenerateRequestMapper} turns a request into a validated
 * {@link dev.memgen.model.generate.Generator.Request} (bad input becomes a gRPC status naming the field);
 * {@link dev.memgen.reasoner.ReasonerGrpcService} runs the model's generate loop on a worker thread and streams
 * one {@code TokenDelta} per token, then {@code Finished}. Latent memory (the trigger and weaver sessions) is
 * not wired in yet: requests that ask for it are decoded with the bare base and say so in
 * {@code Finished.memory_skipped}.
 */
package dev.memgen.reasoner;
