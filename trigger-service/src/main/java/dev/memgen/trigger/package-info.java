/**
 * The memory trigger service: {@code memgen.v1.Trigger/Session} over gRPC, a thin Quarkus layer over
 * {@link dev.memgen.rpc.TriggerService} (memory-rpc), which runs the trigger of memgen-model. One bidirectional
 * session per generation: the reasoner appends token ids (latent blocks as counts) and asks for P(invoke) at
 * delimiters.
 */
package dev.memgen.trigger;
