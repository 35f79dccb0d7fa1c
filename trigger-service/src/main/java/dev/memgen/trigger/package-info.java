/**
 * The memory trigger service. For now it only starts a gRPC server that answers the standard health service
 * (grpc.health.v1.Health), so deployments and the reasoner can already probe it. The later issue adds {@code
 * memgen.v1.Trigger/Session}: one bidirectional session per generation in which the reasoner mirrors its token
 * sequence (latent blocks as counts) and, at each delimiter, asks for a decision; the service runs the trigger
 * network from memgen-model (a LoRA adapter on a base LM plus a 2-way head on the last hidden state) over its
 * own prefix cache, answers P(invoke the weaver), and hot-swaps new trigger versions announced on the
 * memgen.adapters topic. memgen.v1.Trigger is deliberately not registered until then (no UNIMPLEMENTED stub).
 */
package dev.memgen.trigger;
