// A feature's parameter form, generated from its `parameters_schema` (JSON Schema): numbers and
// integers with their bounds, enums as a choice, booleans as a checkbox, strings as text.
import { el } from "./dom.js";

const title = (name) => name.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());

const hint = (spec) => {
  const parts = [];
  if (spec.minimum !== undefined && spec.maximum !== undefined) {
    parts.push(`${spec.minimum} to ${spec.maximum}`);
  }
  if (spec.default !== undefined) parts.push(`default ${JSON.stringify(spec.default)}`);
  return parts.join(", ");
};

const numberInput = (id, spec) => el("input", {
  id, type: "number", min: spec.minimum, max: spec.maximum,
  step: spec.type === "integer" ? 1 : "any", value: spec.default,
});

const enumInput = (id, spec) => el("select", { id },
  spec.enum.map((option) => el("option", { value: option, text: option,
    selected: option === spec.default })));

const control = (id, spec) => {
  if (Array.isArray(spec.enum)) return enumInput(id, spec);
  if (spec.type === "integer" || spec.type === "number") return numberInput(id, spec);
  if (spec.type === "boolean") return el("input", { id, type: "checkbox", checked: spec.default });
  return el("input", { id, type: "text", value: spec.default, maxlength: spec.maxLength });
};

const readValue = (input, spec) => {
  if (input.type === "checkbox") return input.checked;
  if (input.value === "") return undefined;
  if (spec.type === "integer") return Number.parseInt(input.value, 10);
  if (spec.type === "number") return Number(input.value);
  return input.value;
};

// Returns the fieldset and a function that reads the values the person set.
export const parameterForm = (feature) => {
  const properties = (feature.parameters_schema || {}).properties || {};
  const fieldset = el("fieldset", { className: "params" },
    el("legend", { text: `${feature.name} parameters` }));
  const inputs = Object.entries(properties).map(([name, spec]) => {
    const id = `param-${feature.feature_id}-${name}`;
    const input = control(id, spec);
    const note = hint(spec);
    fieldset.append(el("div", { className: "field" },
      el("label", { for: id, text: spec.title || title(name) }), input,
      note ? el("small", { className: "muted", text: note }) : null));
    return [name, spec, input];
  });
  if (!inputs.length) fieldset.append(el("p", { className: "muted", text: "No parameters." }));
  const values = () => {
    const data = {};
    inputs.forEach(([name, spec, input]) => {
      const value = readValue(input, spec);
      if (value !== undefined) data[name] = value;
    });
    return data;
  };
  return { fieldset, values };
};
