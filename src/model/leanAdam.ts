/**
 * tfjs' Adam with one change: the temporaries of each variable's update are freed before the next
 * variable's are made. tfjs' `AdamOptimizer.applyGradients` runs every variable's update inside one
 * `tf.tidy`, so its peak memory is about eight times the size of all the variables together: for
 * MEND's official-size editor of GPT-2 (59M parameters) that alone is ~1.9 GB, beyond what fits in
 * wasm's 4 GB beside the model. The arithmetic is tfjs' own, op for op, and so is the state
 * (`getWeights` / `setWeights`, what optimizerState.ts saves): results are bit-identical.
 * Hand-written because tfjs offers no per-variable update; the method below follows
 * tfjs-core 4.22 `adam_optimizer.js`.
 */
import * as tf from "@tensorflow/tfjs";

/** The private state of tfjs' AdamOptimizer that `applyGradients` reads and writes. */
interface AdamState {
  learningRate: number;
  beta1: number;
  beta2: number;
  epsilon: number;
  accBeta1: tf.Variable;
  accBeta2: tf.Variable;
  accumulatedFirstMoment: ({ originalName: string; variable: tf.Variable } | undefined)[];
  accumulatedSecondMoment: ({ originalName: string; variable: tf.Variable } | undefined)[];
}

export class LeanAdam extends tf.AdamOptimizer {
  override applyGradients(variableGradients: tf.NamedTensorMap | { name: string; tensor: tf.Tensor }[]): void {
    const s = this as unknown as AdamState;
    const names = Array.isArray(variableGradients) ? variableGradients.map((v) => v.name) : Object.keys(variableGradients);
    const [oneMinusAccBeta1, oneMinusAccBeta2] = tf.tidy(() => [tf.sub(1, s.accBeta1), tf.sub(1, s.accBeta2)]);
    names.forEach((name, i) =>
      tf.tidy(() => {
        const value = tf.engine().registeredVariables[name];
        s.accumulatedFirstMoment[i] ??= { originalName: `${name}/m`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
        s.accumulatedSecondMoment[i] ??= { originalName: `${name}/v`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
        const gradient = Array.isArray(variableGradients) ? variableGradients[i].tensor : variableGradients[name];
        if (gradient == null) return;
        const firstMoment = s.accumulatedFirstMoment[i]!.variable;
        const secondMoment = s.accumulatedSecondMoment[i]!.variable;
        const newFirstMoment = tf.add(tf.mul(firstMoment, s.beta1), tf.mul(gradient, 1 - s.beta1));
        const newSecondMoment = tf.add(tf.mul(secondMoment, s.beta2), tf.mul(tf.square(gradient), 1 - s.beta2));
        const biasCorrectedFirstMoment = tf.div(newFirstMoment, oneMinusAccBeta1);
        const biasCorrectedSecondMoment = tf.div(newSecondMoment, oneMinusAccBeta2);
        firstMoment.assign(newFirstMoment);
        secondMoment.assign(newSecondMoment);
        value.assign(tf.add(tf.mul(tf.div(biasCorrectedFirstMoment, tf.add(tf.sqrt(biasCorrectedSecondMoment), s.epsilon)), -s.learningRate), value));
      }),
    );
    tf.dispose([oneMinusAccBeta1, oneMinusAccBeta2]);
    tf.tidy(() => {
      s.accBeta1.assign(tf.mul(s.accBeta1, s.beta1));
      s.accBeta2.assign(tf.mul(s.accBeta2, s.beta2));
    });
    this.incrementIterations();
  }
}

/** Adam (tfjs' arithmetic and state) whose update frees each variable's temporaries before the next. */
export function leanAdam(learningRate: number, beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8): tf.AdamOptimizer {
  return new LeanAdam(learningRate, beta1, beta2, epsilon);
}
