/**
 * The memory weaver service: {@code memgen.v1.Weaver/Session} over gRPC, a thin Quarkus layer over
 * {@link dev.memgen.rpc.WeaverService} (memory-rpc), which runs the weaver of memgen-model. One bidirectional
 * session per generation: the reasoner appends its sequence (token ids; latents by reference to the weave that
 * made them) and asks for K latent rows at the prompt/answer boundary and at triggered delimiters.
 */
package dev.memgen.weaver;
